"""Prometheus and Alertmanager images for the stack in the lab, from Debian's packages:
the lab flavour's own (sid's Prometheus 3.5 and Alertmanager 0.33 on `current`, the
releases stack.yml pins; Debian 12's 2.42 and 0.25 on `bookworm`).

No registry is reachable, so prom/prometheus and prom/alertmanager cannot be pulled. The
Debian packages the lab installs anyway carry the same programs; Debian builds them with
cgo, so they are dynamically linked to glibc (ldd: libc.so.6 and the loader) and need
those libraries beside them on the busybox image. Alertmanager also needs its package's
templates (Debian's build reads default.tmpl from /usr/share/prometheus/alertmanager, and
exits without it). The build context is therefore a `rootfs/` tree mirroring the host
paths of the binary, its libraries and its data, plus the Dockerfile from
tests/lab/infra/dockerfiles/, which describes it.

Images are cached and loaded into every node exactly like the project's own images
(tests/lab/infra/images.py): built once on the manager, saved as a tarball keyed by their
inputs, `docker load`ed everywhere so that the image ID is the same on every node.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import rootfs
from ..config import LabConfig
from .images import BUSYBOX, _digest, _load_everywhere, _save, build_image, image_ids
from .system import LabError, say

DOCKERFILES = Path(__file__).with_name("dockerfiles")


@dataclass(frozen=True)
class MonitoringImage:
    tag: str
    dockerfile: Path
    # The program as its package installs it, and its name under /bin in the image.
    binary: Path
    name: str
    # Directories the program needs, copied to the same path in the image.
    data: tuple[Path, ...] = ()
    # The filesystem the package is installed in: the host's, or the sid root's.
    root: Path = Path("/")

    def on_host(self, path: Path) -> Path:
        return self.root / path.relative_to("/")


def monitoring_images(cfg: LabConfig) -> tuple[MonitoringImage, ...]:
    """Prometheus and Alertmanager as the lab's flavour packages them."""
    root = rootfs.root(cfg) if cfg.flavour == "current" else Path("/")
    return tuple(MonitoringImage(i.tag, i.dockerfile, i.binary, i.name, i.data, root)
                 for i in MONITORING_IMAGES)


PROMETHEUS = MonitoringImage(
    tag="swarmguard-lab/prometheus:latest",
    dockerfile=DOCKERFILES / "prometheus.Dockerfile",
    binary=Path("/usr/bin/prometheus"),
    name="prometheus",
)
ALERTMANAGER = MonitoringImage(
    tag="swarmguard-lab/alertmanager:latest",
    dockerfile=DOCKERFILES / "alertmanager.Dockerfile",
    binary=Path("/usr/bin/prometheus-alertmanager"),
    name="alertmanager",
    data=(Path("/usr/share/prometheus/alertmanager"),),
)
MONITORING_IMAGES = (PROMETHEUS, ALERTMANAGER)


def shared_libraries(binary: Path) -> list[Path]:
    """The shared objects the dynamic loader maps for `binary` (what ldd names), the
    loader itself included; [] for a static binary."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if proc.returncode != 0:
        if "not a dynamic executable" in proc.stdout + proc.stderr:
            return []
        raise LabError(f"ldd {binary} failed: {proc.stderr.strip()}")
    libraries = []
    for line in proc.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2
        # (0x...)", and "linux-vdso.so.1 (0x...)", which the kernel provides (no path).
        words = line.split()
        path = words[2] if "=>" in words else words[0] if words else ""
        if path.startswith("/"):
            libraries.append(Path(path))
        elif "=>" in words and "not found" in line:
            raise LabError(f"{binary} needs {words[0]}, which is not installed")
    return libraries


def prepare_context(image: MonitoringImage, dest: Path) -> Path:
    """Lay out the build context that image.dockerfile describes, in dest; return dest."""
    binary = image.on_host(image.binary)
    if not binary.exists():
        raise LabError(f"{binary} is missing: apt-get install the Debian package "
                       f"that provides it (the lab's install step does)")
    tree = dest / "rootfs"
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, tree / "bin" / image.name)
    # The host's libraries, also for sid's binaries: these need nothing newer than the
    # host's glibc (tests/lab/infra/rootfs.py, binary()).
    for library in shared_libraries(binary):
        target = tree / library.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        # The file's content at the path ldd names (copy2 follows symlinks).
        shutil.copy2(library, target)
    for directory in image.data:
        shutil.copytree(image.on_host(directory), tree / directory.relative_to("/"),
                        dirs_exist_ok=True)
    shutil.copy2(image.dockerfile, dest / image.dockerfile.name)
    return dest


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _inputs_digest(image: MonitoringImage, base_id: str) -> str:
    """Changes when anything that goes into the image changes: base, Dockerfile, binary,
    libraries, data."""
    binary = image.on_host(image.binary)
    parts = [base_id, image.dockerfile.read_text(), _file_digest(binary)]
    parts += [_file_digest(lib) for lib in shared_libraries(binary)]
    for directory in image.data:
        for f in sorted(p for p in image.on_host(directory).rglob("*") if p.is_file()):
            parts += [str(f.relative_to(image.root)), _file_digest(f)]
    return _digest(*parts)


def _build(cfg: LabConfig, image: MonitoringImage, context: Path) -> None:
    say(f"building {image.tag} from {image.on_host(image.binary)} ({image.dockerfile.name})")
    build_image(cfg, context, image.dockerfile.name, image.tag, {"BASE_IMAGE": BUSYBOX})


def build_monitoring_images(cfg: LabConfig) -> dict[str, str]:
    """Make sure the lab's Prometheus and Alertmanager images are on every node; return
    tag -> image ID. Needs the lab's busybox image (tests/lab/infra/images.py, `up`)."""
    base_id = image_ids(cfg)[BUSYBOX]
    built = {}
    for image in monitoring_images(cfg):
        short = image.tag.split("/")[-1].split(":")[0]
        tarball = cfg.cache_dir / "images" / f"{short}-{_inputs_digest(image, base_id)}.tar"
        if not tarball.exists():
            with tempfile.TemporaryDirectory(prefix=f"sglab-{short}-") as tmp:
                _build(cfg, image, prepare_context(image, Path(tmp)))
            _save(cfg, image.tag, tarball)
        built[image.tag] = _load_everywhere(cfg, image.tag, tarball)
    return built
