# The hub configuration of Labspace. Everything comes from labspace.yaml
# (path in $LABSPACE_CONFIG, default ./labspace.yaml); see labspace/hubconfig.py.
from labspace.hubconfig import configure

configure(get_config())  # noqa: F821
