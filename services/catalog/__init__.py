"""The app catalog: admin-curated, versioned interactive apps with group access.

- ``config``: the settings checks and what the hub gets (service, roles, hooks);
- ``apps``: app definitions (schema, rules, bundled apps, workspace entries);
- ``store`` / ``models`` / ``migrations``: the database;
- ``app`` / ``handlers`` / ``launcher`` / ``hubapi``: the service;
- ``hubside``: the spawner hook that validates ``{"app", "version"}`` options.
"""
