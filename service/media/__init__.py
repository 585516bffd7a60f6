"""Media in and out: inputs for the worker, outputs into storage, uploads, retention.

The worker and providers use this package's top-level names::

    from service import media
    path = await media.fetch_input(db, rt, http, account_id=..., task_id=..., role="reference", ref=spec["reference"])
    uri = await media.provider_uri(db, rt, http, ..., upload=provider.upload)
    key = await media.store_output(db, rt, account_id=..., task_id=..., path=render_path)
    keys = await media.rehost(db, rt, http, account_id=..., task_id=..., urls=upstream_urls)
    media.cleanup_work(rt, task_id)

Failures are :class:`MediaError` / :class:`InputError` carrying ``failure_code`` (Runway's
vocabulary), ``message`` (a sentence for the user) and ``retryable``. Input references
a stored spec may hold are described in :mod:`service.media.refs`.
"""

from service.media.inputs import cleanup_work, fetch_input, provider_uri, work_dir
from service.media.outputs import rehost, store_output
from service.media.validation import InputError, MediaError

__all__ = [
    "InputError",
    "MediaError",
    "cleanup_work",
    "fetch_input",
    "provider_uri",
    "rehost",
    "store_output",
    "work_dir",
]
