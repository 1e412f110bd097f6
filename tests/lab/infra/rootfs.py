"""The `current` flavour's programs: a Debian unstable (sid) root filesystem, and how
the lab runs a program from it.

Debian 12 carries Docker Engine 20.10, Prometheus 2.42 and Alertmanager 0.25; what a
person installs today is Engine 28-29, Prometheus 3 and Alertmanager 0.28+. sid carries
docker.io 28.5, containerd 2.1, runc 1.3, prometheus 3.5, prometheus-alertmanager 0.33
and haproxy 3.2, built against sid's own libc: they run from a debootstrapped root, not
from the host's /usr.

The root is built once (debootstrap, about 40 s), kept in the cache as a tarball keyed
by its inputs (suite, mirror, packages) and unpacked next to it. sid moves: a new key
(or removing the tarball) is what fetches newer packages; `versions(cfg)` says what the
cached root holds.

How a program runs from it (`command`): in a mount namespace of its own, pivot_root into
the root (a chroot is not enough: `docker exec` and health checks then ran in the host's
root, see `command`) with /proc, /sys (with the cgroup mounts), /dev and the lab's own run and state
directories bind-mounted at the same paths, and tmpfs on /run and /tmp. Why its own root and
not the root's dynamic loader with LD_LIBRARY_PATH: dockerd starts containerd, runc,
docker-init, docker-proxy and iptables, and those would start with the host's loader and
sid's libc (which fails), or with the host's programs of another version. Why a mount
namespace: the mounts dockerd makes for containers, and the bind mounts above, stay in
it and vanish with its last process, so the host's mount table never holds them and
nothing is left to unmount. The namespace is a slave of the host's, so a path the lab
mounts later is seen inside. The lab's paths are the same inside and out, so sockets,
pidfiles, configuration and data need no translation.
"""
from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path

from ..config import LabConfig
from .system import LabError, output, run, say

SUITE = "sid"
PACKAGES = ("docker.io", "docker-cli", "containerd", "runc", "iptables", "prometheus",
            "prometheus-alertmanager", "haproxy")
# The packages whose versions the lab reports (demo output, docs/lab.md's flavour table).
REPORTED = ("docker.io", "containerd", "runc", "prometheus", "prometheus-alertmanager", "haproxy")
# Trimmed after debootstrap: nothing the lab runs reads them.
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
        "usr/share/locale")
VERSIONS_FILE = ".swarmguard-lab-versions.json"


def _key(cfg: LabConfig) -> str:
    from .images import _digest  # one digest for every cache key
    return _digest(SUITE, cfg.debian_mirror, *PACKAGES)


def tarball(cfg: LabConfig) -> Path:
    return cfg.cache_dir / "rootfs" / f"{SUITE}-{_key(cfg)}.tar.zst"


def root(cfg: LabConfig) -> Path:
    """Where the cached tarball is unpacked (read by every program run from it)."""
    return cfg.cache_dir / "rootfs" / f"{SUITE}-{_key(cfg)}"


def _build(cfg: LabConfig, target: Path) -> None:
    build = cfg.cache_dir / "build" / f"{SUITE}-rootfs"
    shutil.rmtree(build, ignore_errors=True)
    build.parent.mkdir(parents=True, exist_ok=True)
    say(f"debootstrap {SUITE} minbase with {', '.join(PACKAGES)} (about a minute)")
    started = time.monotonic()
    run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
         str(build), cfg.debian_mirror], timeout=1800)
    for sub in TRIM:
        shutil.rmtree(build / sub, ignore_errors=True)
        (build / sub).mkdir(parents=True, exist_ok=True)
    versions = dict(line.split("\t", 1) for line in output(
        ["chroot", str(build), "dpkg-query", "-W", "-f=${Package}\t${Version}\n", *REPORTED]).splitlines())
    (build / VERSIONS_FILE).write_text(json.dumps(versions, indent=2) + "\n")
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    run(["tar", "-C", str(build), "--numeric-owner", "--zstd", "-cf", str(partial), "."], timeout=900)
    partial.rename(target)
    shutil.rmtree(build, ignore_errors=True)
    say(f"{SUITE} root filesystem built in {time.monotonic() - started:.0f}s: "
        f"{target.stat().st_size / 1e6:.0f} MB compressed; "
        + ", ".join(f"{k} {v}" for k, v in versions.items()))


def ensure(cfg: LabConfig) -> Path:
    """The unpacked root filesystem, built and cached on first use; its path."""
    tree, tar = root(cfg), tarball(cfg)
    if (tree / ".complete").exists():
        return tree
    if not tar.exists():
        _build(cfg, tar)
    say(f"unpacking {tar.name}")
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    run(["tar", "-C", str(tree), "--numeric-owner", "--zstd", "-xf", str(tar)], timeout=900)
    (tree / ".complete").write_text("ok")
    return tree


def versions(cfg: LabConfig) -> dict[str, str]:
    """Debian package -> version, of the cached root (empty before it is built)."""
    path = root(cfg) / VERSIONS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def binary(cfg: LabConfig, name: str) -> Path:
    """A program of the root, as a host path. promtool and amtool run from it as they
    are: Go programs that need only libc symbols up to GLIBC_2.34 (objdump -T), which
    Debian 12's glibc 2.36 has. Daemons run through `command` (haproxy needs GLIBC_2.38
    and sid's libssl and liblua; dockerd starts sid's containerd, runc and iptables)."""
    for sub in ("usr/bin", "usr/sbin"):
        path = root(cfg) / sub / name
        if path.exists():
            return path
    raise LabError(f"{name} not found in {root(cfg)}")


def command(cfg: LabConfig, cmd: list[str], *, hostname: str | None = None,
            binds: tuple[Path, ...] = ()) -> list[str]:
    """cmd, run from the root in a mount namespace of its own (see the module's doc).

    The returned command execs into cmd: the PID that starts it is cmd's PID, and cmd's
    name is in its command line (what `alive` checks). hostname also gives it a UTS
    namespace with that hostname (a swarm node's). binds: more host directories to show
    inside at the same path (the lab's run and state directories always are).
    """
    tree = root(cfg)
    if not (tree / ".complete").exists():
        raise LabError(f"the {SUITE} root filesystem is not unpacked: call rootfs.ensure first")
    r = shlex.quote(str(tree))
    lines = ["set -e",
             # The root must be a mount point: dockerd's chrootarchive (docker load,
             # docker cp) remounts / as a slave, which fails with EINVAL on a directory.
             f"mount --bind {r} {r}",
             f"mount -t tmpfs -o mode=755 tmpfs {r}/run",
             f"mount -t tmpfs -o mode=1777 tmpfs {r}/tmp",
             f"mount --rbind /proc {r}/proc",
             f"mount --rbind /sys {r}/sys",
             f"mount --rbind /dev {r}/dev"]
    for path in (cfg.run_dir, cfg.state_dir, *binds):
        path.mkdir(parents=True, exist_ok=True)
        q = shlex.quote(str(path))
        lines += [f"mkdir -p {r}{q}", f"mount --bind {q} {r}{q}"]
    unshare = ["unshare", "--mount", "--propagation", "slave"]
    if hostname:
        unshare.append("--uts")
        lines.append(f"hostname {shlex.quote(hostname)}")
    # pivot_root, not chroot: a chroot leaves the mount namespace's root at the host's /,
    # and runc's `exec` into a container (health checks, `docker exec`) then ran in the
    # host's root instead of the container's ("chdir to cwd (/app) ... no such file").
    lines += [f"cd {r}", "mkdir -p .pivot-old", "pivot_root . .pivot-old", "cd /",
              "umount -l /.pivot-old", 'exec "$@"']
    return [*unshare, "sh", "-c", "\n".join(lines), "sh", *cmd]


def for_flavour(cfg: LabConfig, cmd: list[str]) -> list[str]:
    """cmd as the lab's flavour runs it: from the sid root on `current`, from the host's
    Debian 12 packages (unchanged) on `bookworm`."""
    return command(cfg, cmd) if cfg.flavour == "current" else cmd
