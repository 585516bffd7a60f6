"""The dashboard and playground: server-rendered pages for people (PRODUCT.md, "Fronts" 4).

Layers as everywhere else: page handlers (:mod:`auth`, :mod:`taskpages`,
:mod:`playground`, :mod:`hookpages`) parse, authorise through the signed session
(:mod:`session`, :mod:`guard`) and call the same domain functions as the API; the few
reads only pages need are in :mod:`queries`. :mod:`routes` lists every route.
"""
