"""Golden tests of workspace profiles (``labspace.profiles``): which profile a
person gets for which request, what it means for the workspace, how the spawn
form shows it, and the settings problems an operator sees."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from labspace import profiles
from labspace.profiles import Mount, ProfileError, WorkspaceSpec, resolve
from labspace.settings import SettingsError, load

GiB = 1024**3

SMALL = {
    "slug": "small",
    "display_name": "Small",
    "description": "For notebooks & teaching",
    "default": True,
    "cpu": {"guarantee": 0.5, "limit": 1},
    "memory": {"guarantee": "512M", "limit": "1G"},
    "env": {"SIZE": "small"},
    "groups": [],
}
BIG = {
    "slug": "big",
    "display_name": "Big",
    "cpu": {"limit": 8},
    "memory": {"limit": "32G"},
    "gpus": 1,
    "image": "lab/cuda:1",
    "groups": ["gpu-users"],
    "mounts": [
        {
            "name": "scratch",
            "type": "host",
            "source": "/scratch",
            "target": "/scratch",
            "read_only": False,
        }
    ],
    "node_selector": {"gpu": "a100"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
OTHER = {"slug": "other", "groups": ["nobody"]}
PROFILES = [SMALL, BIG, OTHER]
BACKEND = {
    "type": "local",
    "image": "lab/base:1",
    "env": {"TZ": "UTC", "SIZE": "none"},
    "mounts": [{"name": "reference", "type": "host", "source": "/srv/ref", "target": "/data/ref"}],
}
REFERENCE = Mount("reference", "host", "/srv/ref", "/data/ref", True)
SCRATCH = Mount("scratch", "host", "/scratch", "/scratch", False)

IMPLICIT_SPEC = WorkspaceSpec(
    profile="default",
    display_name="Default",
    image="lab/base:1",
    env={"TZ": "UTC", "SIZE": "none"},
    mounts=(REFERENCE,),
)
SMALL_SPEC = WorkspaceSpec(
    profile="small",
    display_name="Small",
    cpu_guarantee=0.5,
    cpu_limit=1,
    mem_guarantee=512 * 1024**2,
    mem_limit=GiB,
    image="lab/base:1",
    env={"TZ": "UTC", "SIZE": "small"},
    mounts=(REFERENCE,),
)
BIG_SPEC = WorkspaceSpec(
    profile="big",
    display_name="Big",
    cpu_limit=8,
    mem_limit=32 * GiB,
    gpus=1,
    image="lab/cuda:1",
    env={"TZ": "UTC", "SIZE": "none"},
    mounts=(REFERENCE, SCRATCH),
    node_selector={"gpu": "a100"},
    tolerations=({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},),
)
OPTIONS_HINT = 'Options must be a JSON object such as {"profile": "small"}'
UNKNOWN_IMAGE = (
    "Unknown option 'image': the only option is 'profile' (the slug of a profile you may use)"
)

# -- resolve -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings_profiles", "groups", "options", "expected"),
    [
        pytest.param([], set(), {}, IMPLICIT_SPEC, id="implicit"),
        pytest.param([], set(), {"profile": "default"}, IMPLICIT_SPEC, id="implicit-by-slug"),
        pytest.param(PROFILES, set(), {}, SMALL_SPEC, id="default"),
        pytest.param(PROFILES, {"gpu-users"}, {}, SMALL_SPEC, id="default-for-gpu-user"),
        pytest.param(PROFILES, set(), {"profile": "small"}, SMALL_SPEC, id="by-slug"),
        pytest.param(PROFILES, {"gpu-users"}, {"profile": "big"}, BIG_SPEC, id="group-allowed"),
        pytest.param(
            PROFILES, {"staff", "gpu-users"}, {"profile": "big"}, BIG_SPEC, id="one-group-enough"
        ),
        pytest.param(
            [{**BIG, "default": True}, {**SMALL, "default": False}],
            set(),
            {},
            SMALL_SPEC,
            id="default-not-mine",
        ),
        pytest.param(
            [OTHER, {**SMALL, "default": False}, BIG], set(), {}, SMALL_SPEC, id="first-mine"
        ),
    ],
)
def test_resolve(settings_profiles, groups, options, expected):
    assert resolve(settings_profiles, BACKEND, groups, options) == expected


@pytest.mark.parametrize(
    ("settings_profiles", "groups", "options", "status", "message"),
    [
        pytest.param(
            PROFILES,
            set(),
            {"profile": "big"},
            403,
            "Profile 'big' is not open to your groups",
            id="group-refused",
        ),
        pytest.param(
            PROFILES,
            {"gpu-users"},
            {"profile": "other"},
            403,
            "Profile 'other' is not open to your groups",
            id="other-group-refused",
        ),
        pytest.param(
            PROFILES,
            set(),
            {"profile": "nope"},
            400,
            "No such profile: 'nope' (yours: small)",
            id="unknown-slug",
        ),
        pytest.param(
            PROFILES,
            {"gpu-users"},
            {"profile": "nope"},
            400,
            "No such profile: 'nope' (yours: small, big)",
            id="unknown-slug-lists-mine",
        ),
        pytest.param(
            PROFILES, set(), {"profile": ""}, 400, "No such profile: '' (yours: small)", id="empty"
        ),
        pytest.param(
            [],
            set(),
            {"profile": "small"},
            400,
            "No such profile: 'small' (yours: default)",
            id="implicit-only",
        ),
        pytest.param(PROFILES, set(), {"image": "evil"}, 400, UNKNOWN_IMAGE, id="unknown-key"),
        pytest.param(
            PROFILES,
            {"gpu-users"},
            {"profile": "big", "image": "evil"},
            400,
            UNKNOWN_IMAGE,
            id="unknown-key-with-profile",
        ),
        pytest.param(
            PROFILES,
            set(),
            {"cpu_limit": 64, "image": "evil"},
            400,
            "Unknown option 'cpu_limit': the only option is 'profile' "
            "(the slug of a profile you may use)",
            id="unknown-keys-first-named",
        ),
        pytest.param(PROFILES, set(), ["small"], 400, OPTIONS_HINT, id="list"),
        pytest.param(PROFILES, set(), "small", 400, OPTIONS_HINT, id="string"),
        pytest.param(PROFILES, set(), None, 400, OPTIONS_HINT, id="null"),
        pytest.param(
            PROFILES,
            set(),
            {"profile": 1},
            400,
            "Option 'profile' must be a profile slug (a string)",
            id="number",
        ),
        pytest.param(
            PROFILES,
            set(),
            {"profile": ["small"]},
            400,
            "Option 'profile' must be a profile slug (a string)",
            id="slug-list",
        ),
        pytest.param(
            PROFILES,
            set(),
            {"profile": None},
            400,
            "Option 'profile' must be a profile slug (a string)",
            id="slug-null",
        ),
        pytest.param(
            [OTHER, BIG],
            set(),
            {},
            403,
            "No workspace profile is open to your groups (ask an administrator)",
            id="none-open",
        ),
        pytest.param(
            [OTHER, BIG],
            set(),
            {"profile": "x"},
            400,
            "No such profile: 'x' (yours: none)",
            id="none-open-unknown",
        ),
    ],
)
def test_resolve_refused(settings_profiles, groups, options, status, message):
    with pytest.raises(ProfileError) as info:
        resolve(settings_profiles, BACKEND, groups, options)
    assert (info.value.status, info.value.message) == (status, message)
    assert str(info.value) == message


# -- spec_for ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "backend", "expected"),
    [
        pytest.param(SMALL, BACKEND, SMALL_SPEC, id="small"),
        pytest.param(BIG, BACKEND, BIG_SPEC, id="big"),
        pytest.param(
            {"slug": "bare"}, {}, WorkspaceSpec(profile="bare", display_name="bare"), id="bare"
        ),
        pytest.param(
            {"slug": "x", "display_name": "", "cpu": {}, "memory": {}, "image": ""},
            {"image": "lab/base:1"},
            WorkspaceSpec(profile="x", display_name="x", image="lab/base:1"),
            id="empty-values",
        ),
        pytest.param(
            {"slug": "env", "env": {"TZ": "Europe/Berlin", "EXTRA": "1"}},
            {"env": {"TZ": "UTC", "LANG": "C.UTF-8"}},
            WorkspaceSpec(
                profile="env",
                display_name="env",
                env={"TZ": "Europe/Berlin", "LANG": "C.UTF-8", "EXTRA": "1"},
            ),
            id="profile-env-wins",
        ),
        pytest.param(
            {"slug": "m", "memory": {"guarantee": "1.5G", "limit": "512"}},
            {},
            WorkspaceSpec(
                profile="m", display_name="m", mem_guarantee=int(1.5 * GiB), mem_limit=512
            ),
            id="memory-units",
        ),
    ],
)
def test_spec_for(profile, backend, expected):
    assert profiles.spec_for(profile, backend) == expected


def test_spec_for_leaves_settings_alone():
    backend = {"env": {"TZ": "UTC"}, "mounts": list(BACKEND["mounts"])}
    spec = profiles.spec_for({"slug": "a", "env": {"A": "1"}}, backend)
    spec.env["B"] = "2"
    assert backend == {"env": {"TZ": "UTC"}, "mounts": BACKEND["mounts"]}


# -- sizes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("1G", GiB, id="1G"),
        pytest.param("1.5G", int(1.5 * GiB), id="1.5G"),
        pytest.param("512M", 512 * 1024**2, id="512M"),
        pytest.param("100K", 102400, id="100K"),
        pytest.param("2T", 2 * 1024**4, id="2T"),
        pytest.param("512", 512, id="bare-number"),
        pytest.param("2.5", 2, id="bare-fraction"),
        pytest.param(4096, 4096, id="int"),
    ],
)
def test_to_bytes(value, expected):
    assert profiles.to_bytes(value) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(None, "no limit", id="none"),
        pytest.param(0, "0 B", id="0"),
        pytest.param(1023, "1023 B", id="1023"),
        pytest.param(1024, "1 KB", id="1K"),
        pytest.param(1536, "1.5 KB", id="1.5K"),
        pytest.param(512 * 1024**2, "512 MB", id="512M"),
        pytest.param(GiB, "1 GB", id="1G"),
        pytest.param(int(1.5 * GiB), "1.5 GB", id="1.5G"),
        pytest.param(int(1.25 * GiB), "1.2 GB", id="1.25G"),
        pytest.param(32 * GiB, "32 GB", id="32G"),
        pytest.param(4 * 1024**4, "4 TB", id="4T"),
    ],
)
def test_human_bytes(n, expected):
    assert profiles.human_bytes(n) == expected


# -- describe and the spawn form ---------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param(SMALL, "1 CPU · 1 GB memory", id="small"),
        pytest.param(BIG, "8 CPU · 32 GB memory · 1 GPU", id="big"),
        pytest.param({**BIG, "gpus": 2}, "8 CPU · 32 GB memory · 2 GPUs", id="gpus"),
        pytest.param(
            {"slug": "half", "cpu": {"limit": 0.5}}, "0.5 CPU · shared memory", id="half-cpu"
        ),
        pytest.param(
            {"slug": "g", "cpu": {"guarantee": 2}, "memory": {"guarantee": "4G"}},
            "shared CPU · shared memory",
            id="guarantees-only",
        ),
        pytest.param(profiles.implicit_profile(BACKEND), "shared CPU · shared memory", id="impl"),
    ],
)
def test_describe(profile, expected):
    assert profiles.describe(profile, BACKEND) == expected


FORM_SMALL_BIG = """\
<fieldset class="labspace-profiles"><legend>Workspace</legend>
<label class="labspace-profile" for="profile-small">
  <input type="radio" name="profile" id="profile-small" value="small" checked>
  <span class="labspace-profile-name">Small</span>
  <span class="labspace-profile-resources">1 CPU · 1 GB memory</span>
  <span class="labspace-profile-description">For notebooks &amp; teaching</span>
  <span class="labspace-price" data-profile="small"></span>
</label>
<label class="labspace-profile" for="profile-big">
  <input type="radio" name="profile" id="profile-big" value="big">
  <span class="labspace-profile-name">Big</span>
  <span class="labspace-profile-resources">8 CPU · 32 GB memory · 1 GPU</span>
  <span class="labspace-profile-description"></span>
  <span class="labspace-price" data-profile="big"></span>
</label>
</fieldset>"""


def test_options_form_golden():
    assert profiles.options_form([SMALL, BIG], BACKEND) == FORM_SMALL_BIG


def test_options_form_escapes_names():
    evil = {
        "slug": "evil",
        "display_name": '<script>alert("x")</script>',
        "description": "<b>bold</b> & 'quoted'",
    }
    form = profiles.options_form([evil], BACKEND)
    assert "<script>" not in form and "<b>" not in form
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in form
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#x27;quoted&#x27;" in form


@pytest.mark.parametrize(
    ("shown", "checked"),
    [
        pytest.param([SMALL, BIG], "small", id="default-first"),
        pytest.param([BIG, SMALL], "small", id="default-second"),
        pytest.param([BIG, OTHER], "big", id="no-default-first"),
        pytest.param([OTHER], "other", id="one"),
    ],
)
def test_options_form_choices(shown, checked):
    form = profiles.options_form(shown, BACKEND)
    slugs = [p["slug"] for p in shown]
    for p in PROFILES:
        present = p["slug"] in slugs
        assert (f'value="{p["slug"]}"' in form) == present
        assert (f'<span class="labspace-price" data-profile="{p["slug"]}">' in form) == present
    assert form.count('type="radio"') == len(shown)
    assert form.count(" checked>") == 1
    assert f'value="{checked}" checked>' in form


@pytest.mark.parametrize(
    ("formdata", "expected"),
    [
        pytest.param({"profile": ["big"], "_xsrf": ["t0ken"]}, {"profile": "big"}, id="xsrf"),
        pytest.param({"_xsrf": ["t0ken"]}, {}, id="nothing-chosen"),
        pytest.param({"profile": []}, {}, id="empty-list"),
        pytest.param({"profile": ["small", "big"]}, {"profile": "small"}, id="first-value"),
        pytest.param(
            {"profile": ["big"], "image": ["evil"], "_xsrf": ["t"]},
            {"profile": "big", "image": "evil"},
            id="unknown-kept",
        ),
        pytest.param({"cpu_limit": []}, {"cpu_limit": ""}, id="unknown-empty"),
    ],
)
def test_options_from_form(formdata, expected):
    assert profiles.options_from_form(formdata) == expected


def test_form_extra_field_is_refused_by_resolve():
    options = profiles.options_from_form({"profile": ["small"], "image": ["evil"]})
    with pytest.raises(ProfileError) as info:
        resolve(PROFILES, BACKEND, set(), options)
    assert (info.value.status, info.value.message) == (400, UNKNOWN_IMAGE)


@pytest.mark.parametrize(
    ("settings_profiles", "backend", "expected"),
    [
        pytest.param(PROFILES, BACKEND, {"lab/base:1", "lab/cuda:1"}, id="backend-and-profile"),
        pytest.param([], BACKEND, {"lab/base:1"}, id="backend-only"),
        pytest.param([BIG], {"image": ""}, {"lab/cuda:1"}, id="profile-only"),
        pytest.param([SMALL, OTHER], {}, set(), id="none"),
        pytest.param([BIG, {**SMALL, "image": "lab/cuda:1"}], BACKEND, {"lab/base:1", "lab/cuda:1"},
                     id="same-image-twice"),
    ],
)  # fmt: skip
def test_allowed_images(settings_profiles, backend, expected):
    assert profiles.allowed_images(settings_profiles, backend) == expected


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        pytest.param(set(), ["small"], id="everyone"),
        pytest.param({"gpu-users"}, ["small", "big"], id="gpu-user"),
        pytest.param({"gpu-users", "nobody"}, ["small", "big", "other"], id="all"),
    ],
)
def test_visible_profiles(groups, expected):
    shown = profiles.visible_profiles(PROFILES, BACKEND, groups)
    assert [p["slug"] for p in shown] == expected


# -- settings problems -------------------------------------------------------


@pytest.fixture
def problems_of(tmp_path):
    """Write ``text`` as labspace.yaml and return the problems ``load`` reports."""

    def problems_of(text: str) -> list[str]:
        path = Path(tmp_path, "labspace.yaml")
        path.write_text(text)
        with pytest.raises(SettingsError) as info:
            load(path, environ={})
        return info.value.problems

    return problems_of


def mount(name: str, kind: str, target: str = "") -> str:
    source = f"nfs.example.org:/src-{name}" if kind == "nfs" else f"src-{name}"
    return f"{{name: {name}, type: {kind}, source: '{source}', target: {target or '/' + name}}}"


SETTINGS_PROBLEMS = [
    pytest.param(
        "profiles:\n  - {slug: small}\n  - {slug: big}\n  - {slug: small}\n",
        ["profiles[2].slug: 'small' is also profiles[0] (give each profile its own slug)"],
        id="duplicate-slug",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, default: true}\n  - {slug: b, default: true}\n"
        "  - {slug: c, default: true}\n",
        ["profiles[1].default: profiles[0] is the default already (mark one profile default)"],
        id="two-defaults",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, cpu: {guarantee: 2, limit: 1}}\n",
        ["profiles[0].cpu.guarantee: 2 is more than the limit 1 (at most the limit)"],
        id="cpu-guarantee",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, memory: {guarantee: 2G, limit: 1G}}\n",
        ["profiles[0].memory.guarantee: 2G is more than the limit 1G (at most the limit)"],
        id="memory-guarantee",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, memory: {guarantee: 1025M, limit: 1G}}\n",
        ["profiles[0].memory.guarantee: 1025M is more than the limit 1G (at most the limit)"],
        id="memory-units-compared",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, memory: {guarantee: '2048', limit: 1K}}\n",
        ["profiles[0].memory.guarantee: 2048 is more than the limit 1K (at most the limit)"],
        id="memory-bare-bytes",
    ),
    pytest.param(
        f"backend:\n  type: docker\n  mounts:\n    - {mount('claim', 'pvc')}\n",
        [
            "backend.mounts[0].type: 'pvc' mounts do not work on the docker backend "
            "(use one of: host, volume)"
        ],
        id="pvc-on-docker",
    ),
    pytest.param(
        f"backend:\n  type: docker\n  mounts:\n    - {mount('share', 'nfs')}\n",
        [
            "backend.mounts[0].type: 'nfs' mounts do not work on the docker backend "
            "(use one of: host, volume)"
        ],
        id="nfs-on-docker",
    ),
    pytest.param(
        f"backend:\n  mounts:\n    - {mount('data', 'host')}\n    - {mount('vol', 'volume')}\n",
        [
            "backend.mounts[1].type: 'volume' mounts do not work on the local backend "
            "(use one of: host)"
        ],
        id="volume-on-local",
    ),
    pytest.param(
        f"backend:\n  type: kubernetes\n  mounts:\n    - {mount('vol', 'volume')}\n",
        [
            "backend.mounts[0].type: 'volume' mounts do not work on the kubernetes backend "
            "(use one of: host, nfs, pvc)"
        ],
        id="volume-on-kubernetes",
    ),
    pytest.param(
        f"profiles:\n  - slug: a\n    mounts:\n      - {mount('claim', 'pvc')}\n",
        [
            "profiles[0].mounts[0].type: 'pvc' mounts do not work on the local backend "
            "(use one of: host)"
        ],
        id="profile-pvc-on-local",
    ),
    pytest.param(
        f"backend:\n  mounts:\n    - {mount('data', 'host')}\n"
        f"    - {mount('data', 'host', '/x')}\n",
        [
            "backend.mounts[1].name: 'data' is also the name of backend.mounts[0] "
            "(give each mount its own name)"
        ],
        id="duplicate-mount-name",
    ),
    pytest.param(
        f"profiles:\n  - slug: a\n    mounts:\n      - {mount('x', 'host', '/data')}\n"
        f"      - {mount('y', 'host', '/data')}\n",
        [
            "profiles[0].mounts[1].target: '/data' is also the target of profiles[0].mounts[0] "
            "(give each mount its own target)"
        ],
        id="duplicate-mount-target",
    ),
    pytest.param(
        f"backend:\n  mounts:\n    - {mount('ref', 'host')}\n"
        f"profiles:\n  - slug: a\n    mounts:\n      - {mount('ref', 'host', '/other')}\n"
        f"  - slug: b\n    mounts:\n      - {mount('mine', 'host', '/ref')}\n",
        [
            "profiles[0].mounts[0].name: 'ref' is also the name of backend.mounts[0] "
            "(give each mount its own name)",
            "profiles[1].mounts[0].target: '/ref' is also the target of backend.mounts[0] "
            "(give each mount its own target)",
        ],
        id="profile-mount-clashes-with-backend",
    ),
    pytest.param(
        "profiles:\n  - {slug: Small}\n",
        ["profiles[0].slug: 'Small' is not valid (lowercase letters, digits and '-', e.g. small)"],
        id="slug-uppercase",
    ),
    pytest.param(
        "profiles:\n  - {slug: -small}\n",
        ["profiles[0].slug: '-small' is not valid (lowercase letters, digits and '-', e.g. small)"],
        id="slug-dash",
    ),
    pytest.param(
        f"profiles:\n  - {{slug: {'a' * 33}}}\n",
        [
            f"profiles[0].slug: '{'a' * 33}' is not valid "
            "(lowercase letters, digits and '-', e.g. small)"
        ],
        id="slug-long",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, memory: {limit: 4GB}}\n",
        ["profiles[0].memory.limit: '4GB' is not valid (a size such as 512M, 4G or 1.5G)"],
        id="memory-4GB",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, memory: {limit: 4}}\n",
        [
            "profiles[0].memory.limit: expected a text value, got a number 4 "
            "(a size such as 512M, 4G or 1.5G)"
        ],
        id="memory-number",
    ),
    pytest.param(
        "profiles:\n  - {slug: a, groups: [staff, staff]}\n",
        ["profiles[0].groups: lists an entry more than once (list each once)"],
        id="groups-twice",
    ),
    pytest.param(
        f"backend:\n  mounts:\n    - {mount('Data', 'host')}\n",
        [
            "backend.mounts[0].name: 'Data' is not valid "
            "(lowercase letters, digits and '-', e.g. reference-data)"
        ],
        id="mount-name",
    ),
    pytest.param(
        f"backend:\n  mounts:\n    - {mount('data', 'host', 'data')}\n",
        [
            "backend.mounts[0].target: 'data' is not valid "
            "(an absolute path such as /data/reference)"
        ],
        id="mount-target-relative",
    ),
]


@pytest.mark.parametrize(("text", "expected"), SETTINGS_PROBLEMS)
def test_settings_problem(problems_of, text, expected):
    assert problems_of(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("profiles: []\n", id="none"),
        pytest.param(
            "profiles:\n  - {slug: a, cpu: {guarantee: 1, limit: 1}, "
            "memory: {guarantee: 1024M, limit: 1G}}\n",
            id="guarantee-equals-limit",
        ),
        pytest.param(
            "profiles:\n  - {slug: a, memory: {guarantee: '512', limit: 1K}}\n", id="bare-bytes"
        ),
        pytest.param(
            f"backend:\n  mounts:\n    - {mount('ref', 'host')}\n"
            f"profiles:\n  - slug: a\n    mounts:\n      - {mount('scratch', 'host')}\n"
            f"  - slug: b\n    mounts:\n      - {mount('scratch', 'host')}\n",
            id="same-mount-in-two-profiles",
        ),
        pytest.param(
            f"backend:\n  type: docker\n  mounts:\n    - {mount('a', 'host')}\n"
            f"    - {mount('b', 'volume')}\n",
            id="docker-mounts",
        ),
        pytest.param(
            f"backend:\n  type: kubernetes\n  mounts:\n    - {mount('a', 'host')}\n"
            f"    - {mount('b', 'pvc')}\n    - {mount('c', 'nfs')}\n",
            id="kubernetes-mounts",
        ),
    ],
)
def test_settings_good(tmp_path, text):
    path = tmp_path / "labspace.yaml"
    path.write_text(text)
    settings = load(path, environ={})
    given = yaml.safe_load(text)
    assert settings.get("profiles") == given.get("profiles", [])
    assert settings.get("backend.mounts") == given.get("backend", {}).get("mounts", [])


@pytest.mark.parametrize(
    ("mount", "line"),
    [
        pytest.param(
            {"name": "share", "type": "nfs", "source": "nfs-server", "target": "/data/share"},
            "profiles[0].mounts[0].source: 'nfs-server' is not an NFS export "
            "(server:/export, e.g. nfs.example.org:/srv/data)",
            id="nfs-no-export",
        ),
        pytest.param(
            {"name": "home", "type": "pvc", "source": "claim", "target": "/home/jovyan/"},
            "profiles[0].mounts[0].target: '/home/jovyan/' is where the home folder is "
            "mounted (mount below it or elsewhere, e.g. /data/<name>)",
            id="over-home",
        ),
    ],
)
def test_kubernetes_mount_problems(mount, line, tmp_path):
    import yaml

    from labspace import settings

    path = tmp_path / "labspace.yaml"
    path.write_text(
        yaml.safe_dump(
            {"backend": {"type": "kubernetes"}, "profiles": [{"slug": "a", "mounts": [mount]}]}
        )
    )
    with pytest.raises(settings.SettingsError) as e:
        settings.load(path, environ={})
    assert e.value.problems == [line]
