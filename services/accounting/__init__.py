"""Labspace accounting: prices, project budgets, usage sessions and enforcement.

A JupyterHub-managed service (``python -m labspace.services.accounting``). The
hub side (``hubside``, ``outbox``, ``deliver``) runs in and next to the hub; the
rest is the service: ``pricing`` and ``policy`` (pure), ``models`` and
``migrations`` (the database), ``ledger`` and ``usage`` (units of work),
``reports``, ``app`` (the tornado application) and ``loops`` (charger and
reconciler).
"""
