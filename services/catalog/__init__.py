"""The app catalog: admin-curated, versioned interactive apps with group access.

- ``config``: the settings checks and what the hub gets (service, roles, hooks);
- ``apps``: app definitions (schema, rules, bundled apps, workspace entries);
- ``store`` / ``models`` / ``migrations``: the database (on ``kit.db.Database``);
- ``app`` / ``handlers`` / ``internal`` / ``launcher`` / ``hubapi``: the service,
  on the shared kit (``labspace.services.kit``);
- ``hubside``: the spawner hook in the hub process; it asks the service
  (``internal``) to check ``{"app", "version"}`` options and never opens the
  catalog's database.
"""
