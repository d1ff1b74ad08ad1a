"""The data service: datasets with per-group read / write grants, resolved at
every start and mounted by the backend, with an audit trail (see
``docs/how-to/data.md``)."""
