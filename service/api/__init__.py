"""The HTTP front: Starlette routes that parse, authorise and call domain functions."""
