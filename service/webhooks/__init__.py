"""Signed webhooks: endpoints and subscriptions, the delivery queue, the delivery job.

Layers (STYLE.md): ``service.api.webhooks`` (HTTP) → :mod:`endpoints`, :mod:`history`,
:mod:`feed` (domain, one connection, never commit) → the tables; the worker runs
:class:`delivery.DeliveryJob`, which uses :mod:`queue` (claim/complete under lease and
fence), :mod:`signing` (Standard Webhooks v1) and :mod:`policy` (pure retry decisions).
"""
