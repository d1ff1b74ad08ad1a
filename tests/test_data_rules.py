"""Golden tests of the data service's pure rules (``services/data/rules.py``):
path safety against real symlinks in a temporary tree, datasets per backend,
grants and the strongest level."""

from __future__ import annotations

import os
import re

import pytest

from labspace.services.data import rules
from labspace.services.data.rules import DataError, check_dataset, check_path


@pytest.fixture
def tree(tmp_path):
    """``<tmp>/data/proj`` (the root) with a folder, a link inside the root, links
    out of it (absolute, relative, to the sibling ``proj2``) and a linked root."""
    root = tmp_path / "data" / "proj"
    (root / "genomes" / "hg38").mkdir(parents=True)
    sibling = tmp_path / "data" / "proj2"
    (sibling / "secret").mkdir(parents=True)
    outside = tmp_path / "etc"
    outside.mkdir()
    (root / "inside-link").symlink_to(root / "genomes")
    (root / "out-abs").symlink_to(outside)
    (root / "out-rel").symlink_to("../proj2/secret")
    (root / "genomes" / "deep-out").symlink_to("../../../etc")
    (tmp_path / "linked-root").symlink_to(root)
    return tmp_path


def roots_of(tree):
    return [str(tree / "data" / "proj")]


# -- check_path ----------------------------------------------------------------


def test_path_inside_is_normalised(tree):
    roots = roots_of(tree)
    base = roots[0]
    assert check_path(f"{base}/genomes", roots) == f"{base}/genomes"
    assert check_path(f"{base}//genomes/./hg38/", roots) == f"{base}/genomes/hg38"
    assert check_path(base, roots) == base  # the root itself
    assert check_path(f"{base}/inside-link", roots) == f"{base}/inside-link"
    # a path that does not exist yet may still be checked (it cannot leave the root)
    assert check_path(f"{base}/not-yet/there", roots) == f"{base}/not-yet/there"
    # a root written with a trailing slash or an extra slash matches the same
    assert check_path(f"{base}/genomes", [base + "/"]) == f"{base}/genomes"


@pytest.mark.parametrize(
    "path,says",
    [
        ("relative/genomes", "not an absolute path"),
        ("", "no host path"),
        ("{base}/../proj2/secret", "'..' part"),
        ("{base}/genomes/../../proj2", "'..' part"),
        ("{base}/..", "'..' part"),
        ("{tree}/data/proj2/secret", "outside every allowed root"),  # sibling prefix
        ("{tree}/data/proj2", "outside every allowed root"),
        ("{tree}/data", "outside every allowed root"),  # the parent
        ("/etc/passwd", "outside every allowed root"),
        ("{base}/out-abs", "symbolic link"),
        ("{base}/out-rel", "symbolic link"),  # relative link to the sibling
        ("{base}/out-abs/anything", "symbolic link"),
        ("{base}/genomes/deep-out", "symbolic link"),
        ("{base}/genomes\0x", "NUL"),
    ],
)
def test_path_attacks_refused(tree, path, says):
    roots = roots_of(tree)
    path = path.format(base=roots[0], tree=tree)
    with pytest.raises(DataError) as e:
        check_path(path, roots)
    assert e.value.status == 400
    assert says in e.value.message
    assert e.value.message.startswith("source: ")


def test_non_text_path_refused(tree):
    with pytest.raises(DataError):
        check_path(None, roots_of(tree))
    with pytest.raises(DataError):
        check_path(42, roots_of(tree))


def test_links_not_followed_when_asked_not_to(tree):
    base = roots_of(tree)[0]
    # the service checks paths of a node it cannot see (kubernetes hostPath) without links
    assert check_path(f"{base}/out-abs", [base], resolve_links=False) == f"{base}/out-abs"
    with pytest.raises(DataError, match="'..' part"):
        check_path(f"{base}/../proj2", [base], resolve_links=False)


def test_linked_root_compares_real_paths(tree):
    linked = str(tree / "linked-root")
    # a root that is itself a link: paths under it are judged by their real place
    assert check_path(f"{linked}/genomes", [linked]) == f"{linked}/genomes"
    with pytest.raises(DataError, match="symbolic link"):
        check_path(f"{linked}/out-abs", [linked])


def test_no_roots_refuses_every_host_path(tree):
    with pytest.raises(DataError, match=r"none: set data.roots"):
        check_path(str(tree), [])


def test_link_swapped_after_saving_is_caught_again(tree):
    """A dataset saved while its folder was real is refused at mount time once
    the folder has become a link out of the root."""
    roots = roots_of(tree)
    folder = tree / "data" / "proj" / "later"
    folder.mkdir()
    assert check_path(str(folder), roots) == str(folder)
    folder.rmdir()
    folder.symlink_to(tree / "etc")
    with pytest.raises(DataError, match="symbolic link"):
        check_path(str(folder), roots)


# -- datasets ------------------------------------------------------------------


def host(tree, **kw):
    return {"id": "genomes", "kind": "host", "source": f"{roots_of(tree)[0]}/genomes", **kw}


S3 = {
    "id": "shared-s3",
    "kind": "s3",
    "source": "",
    "s3": {"endpoint": "http://127.0.0.1:9000", "bucket": "lab-data", "prefix": "genomes"},
}


def test_host_dataset_normalised_with_defaults(tree):
    d = check_dataset(host(tree, source=f"{roots_of(tree)[0]}/genomes/"), roots_of(tree), "docker")
    assert d == {
        "id": "genomes",
        "title": "genomes",
        "description": "",
        "kind": "host",
        "source": f"{roots_of(tree)[0]}/genomes",
        "sub_path": "",
        "mount_path": "",
        "size": None,
        "owner_group": "",
        "tags": [],
        "s3": None,
    }


def test_settings_keys_left_to_their_owners(tree):
    d = check_dataset(
        host(tree, grants=[{"group": "a", "level": "read"}], credentials={}),
        roots_of(tree),
        "local",
    )
    assert "grants" not in d and "credentials" not in d


def test_s3_dataset_normalised():
    d = check_dataset(S3, [], "local")
    assert d["s3"] == {
        "endpoint": "http://127.0.0.1:9000",
        "bucket": "lab-data",
        "prefix": "genomes/",
        "region": "",
    }
    assert d["source"] == ""


@pytest.mark.parametrize(
    "backend,kind,source,ok",
    [
        ("docker", "host", "{base}/genomes", True),
        ("docker", "volume", "lab-scratch", True),
        ("docker", "pvc", "claim", False),
        ("docker", "nfs", "files:/exports", False),
        ("kubernetes", "pvc", "lab-claim", True),
        ("kubernetes", "nfs", "files.example.org:/exports/data", True),
        ("kubernetes", "host", "{base}/genomes", True),
        ("kubernetes", "volume", "lab-scratch", False),
        ("local", "host", "{base}/genomes", True),
        ("local", "volume", "lab-scratch", False),
        ("local", "pvc", "claim", False),
    ],
)
def test_kinds_per_backend(tree, backend, kind, source, ok):
    d = {"id": "x", "kind": kind, "source": source.format(base=roots_of(tree)[0])}
    if ok:
        assert check_dataset(d, roots_of(tree), backend)["kind"] == kind
    else:
        with pytest.raises(DataError, match=f"the {backend} backend cannot mount '{kind}'"):
            check_dataset(d, roots_of(tree), backend)


@pytest.mark.parametrize("backend", ["docker", "kubernetes", "local"])
def test_s3_on_every_backend(backend):
    assert check_dataset(S3, [], backend)["kind"] == "s3"


def test_nfs_source_normalised():
    d = {"id": "n", "kind": "nfs", "source": "files.example.org:/exports//data/", "sub_path": "a/"}
    out = check_dataset(d, [], "kubernetes")
    assert out["source"] == "files.example.org:/exports/data"
    assert out["sub_path"] == "a"


BAD = [
    ("id-upper", {"id": "Genomes"}, "id: 'Genomes' is not a dataset id"),
    ("id-long", {"id": "a" * 64}, "id: "),
    ("id-missing", {"id": None}, "id: None"),
    ("kind", {"kind": "ftp"}, "kind: 'ftp' is not a kind"),
    ("host-relative", {"source": "genomes"}, "source: 'genomes' is not an absolute path"),
    ("host-outside", {"source": "/etc"}, "outside every allowed root"),
    ("host-dotdot", {"source": "{base}/../proj2"}, "'..' part"),
    ("host-missing", {"source": ""}, "source: missing"),
    ("host-subpath", {"sub_path": "x"}, "sub_path: only pvc, nfs and volume"),
    ("mount-relative", {"mount_path": "data/x"}, "mount_path: 'data/x' is not absolute"),
    ("mount-home", {"mount_path": "/home/jovyan"}, "in or above the home"),
    ("mount-in-home", {"mount_path": "/home/jovyan/data"}, "in or above the home"),
    ("mount-above-home", {"mount_path": "/home"}, "in or above the home"),
    ("mount-root", {"mount_path": "/"}, "in or above the home"),
    ("mount-etc", {"mount_path": "/etc/ssl"}, "system folder"),
    ("mount-usr", {"mount_path": "/usr"}, "system folder"),
    ("mount-dotdot", {"mount_path": "/data/../etc"}, "'..' part"),
    ("size", {"size": "ten gigs"}, "size: 'ten gigs' is not a size"),
    ("size-negative", {"size": -1}, "size: -1"),
    ("size-bool", {"size": True}, "size: True"),
    ("size-huge", {"size": "99999P"}, "size: at most 9223372036854775807 bytes (8 EiB)"),
    ("size-huge-int", {"size": 2**63}, "size: at most"),
    ("size-inf", {"size": float("inf")}, "size: inf is not a size"),
    ("tags", {"tags": "a,b"}, "tags: must be a list"),
    ("title", {"title": 5}, "title: must be a text"),
    ("s3-on-host", {"s3": {"bucket": "abc"}}, "s3: only s3 datasets have one"),
    ("unknown", {"colour": "red"}, "colour: unknown field"),
]


@pytest.mark.parametrize("change,says", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_dataset_refused(tree, change, says):
    base = roots_of(tree)[0]
    d = host(
        tree, **{k: v.format(base=base) if isinstance(v, str) else v for k, v in change.items()}
    )
    with pytest.raises(DataError) as e:
        check_dataset(d, roots_of(tree), "docker")
    assert e.value.status == 400
    assert says in e.value.message
    # every message names a field, says what is wrong, and the fix in brackets when there is one
    assert re.match(r"^[a-z_0-9.]+: ", e.value.message)


BAD_OTHER = [
    ("vol-name", "docker", {"kind": "volume", "source": "bad name"}, "not a Docker volume"),
    ("vol-subpath-up", "docker", {"kind": "volume", "source": "v", "sub_path": "../x"}, "'..'"),
    ("vol-subpath-abs", "docker", {"kind": "volume", "source": "v", "sub_path": "/x"}, "relative"),
    ("pvc-name", "kubernetes", {"kind": "pvc", "source": "Claim_1"}, "not a claim name"),
    ("nfs-no-export", "kubernetes", {"kind": "nfs", "source": "files"}, "not server:/export"),
    ("nfs-rel-export", "kubernetes", {"kind": "nfs", "source": "f:exports"}, "server:/export"),
    ("nfs-dotdot", "kubernetes", {"kind": "nfs", "source": "f:/e/../etc"}, "'..' part"),
    ("local-abs-mount", "local", {"mount_path": "/data/x"}, "links datasets into the home"),
    ("local-home", "local", {"mount_path": "~/"}, "the home or a hidden folder"),
    ("local-hidden", "local", {"mount_path": "~/.ssh"}, "hidden folder"),
    ("s3-source", "local", {**S3, "source": "/x"}, "source: unused for s3"),
    ("s3-missing", "local", {"kind": "s3", "source": ""}, "s3: missing"),
    ("s3-bucket", "local", {**S3, "s3": {"bucket": "B"}}, "s3.bucket: 'B'"),
    (
        "s3-endpoint-user",
        "local",
        {**S3, "s3": {**S3["s3"], "endpoint": "http://u:p@h"}},
        "endpoint",
    ),
    ("s3-endpoint-ftp", "local", {**S3, "s3": {**S3["s3"], "endpoint": "ftp://h"}}, "endpoint"),
    ("s3-prefix-up", "local", {**S3, "s3": {**S3["s3"], "prefix": "../other"}}, "s3.prefix"),
    ("s3-prefix-abs", "local", {**S3, "s3": {**S3["s3"], "prefix": "/x"}}, "s3.prefix"),
    ("s3-key", "local", {**S3, "s3": {**S3["s3"], "secret": "x"}}, "s3.secret: unknown"),
    ("s3-subpath", "local", {**S3, "sub_path": "x"}, "s3.prefix"),
    ("backend", "podman", {}, "backend: 'podman'"),
]


@pytest.mark.parametrize(
    "backend,change,says", [b[1:] for b in BAD_OTHER], ids=[b[0] for b in BAD_OTHER]
)
def test_bad_dataset_other_kinds_refused(tree, backend, change, says):
    d = host(tree, **change)
    with pytest.raises(DataError) as e:
        check_dataset(d, roots_of(tree), backend)
    assert says in e.value.message


def test_good_values_kept(tree):
    d = check_dataset(
        host(
            tree,
            title=" Reference genomes ",
            mount_path="/data/ref//genomes/",
            size="1.5G",
            tags=["bio", "bio", " ref "],
            owner_group="lab-a",
        ),
        roots_of(tree),
        "docker",
    )
    assert d["title"] == "Reference genomes"
    assert d["mount_path"] == "/data/ref/genomes"
    assert d["size"] == int(1.5 * 1024**3)
    assert d["tags"] == ["bio", "ref"]
    local = check_dataset(host(tree, mount_path="~/shared//genomes/"), roots_of(tree), "local")
    assert local["mount_path"] == "~/shared/genomes"


@pytest.mark.parametrize(
    "size,n",
    [
        ("", None),
        (None, None),
        (0, 0),
        (512, 512),
        ("512", 512),
        ("10G", 10 * 1024**3),
        ("10GiB", 10 * 1024**3),
        ("2k", 2048),
        ("1T", 1024**4),
    ],
)
def test_sizes(size, n):
    assert rules.parse_size(size) == n


def test_dataset_problems_lists_every_mistake(tree):
    d = {"id": "Bad", "kind": "pvc", "source": "/etc", "mount_path": "rel", "size": "x"}
    lines = rules.dataset_problems("data.datasets[3]", d, roots_of(tree), "docker")
    assert [line.split(":")[0] for line in lines] == [
        "data.datasets[3].id",
        "data.datasets[3].kind",
        "data.datasets[3].source",
        "data.datasets[3].mount_path",
        "data.datasets[3].size",
    ]
    assert rules.dataset_problems("data.datasets[0]", host(tree), roots_of(tree), "docker") == []
    assert rules.dataset_problems("data.datasets[1]", "x", [], "docker") == [
        "data.datasets[1]: must be a mapping (id, title, kind, source, ...)"
    ]


def test_mount_path_defaults():
    assert rules.mount_path({"id": "g", "mount_path": ""}, "docker") == "/data/g"
    assert rules.mount_path({"id": "g"}, "kubernetes") == "/data/g"
    assert rules.mount_path({"id": "g"}, "local") == "~/data/g"
    assert rules.mount_path({"id": "g", "mount_path": "/ref"}, "docker") == "/ref"


# -- grants --------------------------------------------------------------------


def test_strongest():
    assert rules.strongest([]) is None
    assert rules.strongest(["read"]) == "read"
    assert rules.strongest(["read", "write", "read"]) == "write"
    assert rules.strongest(["admin", "read"]) == "read"
    assert rules.strongest(["owner"]) is None


GRANTS = [
    {"dataset": "genomes", "group": "lab-a", "level": "read"},
    {"dataset": "genomes", "user": "alice", "level": "write"},
    {"dataset": "scratch", "subject_type": "group", "subject": "lab-a", "level": "write"},
    {"dataset": "scratch", "subject_type": "group", "subject": "lab-b", "level": "read"},
    {"dataset": "secret", "group": "lab-b", "level": "write"},
    {"dataset": "odd", "group": "lab-a", "level": "owner"},
]


@pytest.mark.parametrize(
    "user,groups,held",
    [
        ("alice", {"lab-a"}, {"genomes": "write", "scratch": "write"}),
        ("bob", {"lab-a"}, {"genomes": "read", "scratch": "write"}),
        ("bob", {"lab-a", "lab-b"}, {"genomes": "read", "scratch": "write", "secret": "write"}),
        ("carol", {"lab-b"}, {"scratch": "read", "secret": "write"}),
        ("alice", set(), {"genomes": "write"}),
        ("mallory", set(), {}),
        # a user named like a group gets nothing through the group's grants
        ("lab-a", set(), {}),
    ],
)
def test_resolve_grants(user, groups, held):
    assert rules.resolve_grants(GRANTS, user, groups) == held


@pytest.mark.parametrize(
    "grant,out",
    [
        ({"group": "lab-a", "level": "read"}, ("group", "lab-a", "read")),
        ({"user": " alice ", "level": "write"}, ("user", "alice", "write")),
        ({"subject_type": "user", "subject": "bob", "level": "read"}, ("user", "bob", "read")),
    ],
)
def test_check_grant(grant, out):
    assert rules.check_grant(grant) == dict(
        zip(("subject_type", "subject", "level"), out, strict=True)
    )


@pytest.mark.parametrize(
    "grant,says",
    [
        ({"group": "a", "user": "b", "level": "read"}, "both"),
        ({"level": "read"}, "names no group or user"),
        ({"group": "", "level": "read"}, "names no group or user"),
        ({"group": 3, "level": "read"}, "names no group or user"),
        ({"group": "a", "level": "admin"}, "level: 'admin' is not a level"),
        ({"group": "a"}, "level: None"),
        ({"subject_type": "role", "subject": "x", "level": "read"}, "'role' is not a subject"),
        ("lab-a", "must be an object"),
    ],
)
def test_check_grant_refuses(grant, says):
    with pytest.raises(DataError) as e:
        rules.check_grant(grant)
    assert says in e.value.message and e.value.status == 400


def test_levels_and_id_pattern_are_the_contract():
    assert rules.LEVELS == ("read", "write")
    assert rules.ID_PATTERN == r"[a-z0-9][a-z0-9-]{0,62}"
    assert os.sep == "/"
