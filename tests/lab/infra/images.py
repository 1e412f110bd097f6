"""Lab images, built offline from Debian packages and the project's own code.

No registry is reachable, so every image is made here: a busybox image, a Python base
(a Debian rootfs with the project's dependencies installed from wheels fetched on the
host), and the project's own images built from their Dockerfiles on that base. Each is
built once on the manager, saved as a tarball in the cache (keyed by a hash of its
inputs, so it is rebuilt only when they change) and loaded into every node: the image
ID is then identical everywhere and services can name images by ID, which spares every
task start a doomed registry look-up.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

from ..config import PROJECT_ROOT, LabConfig
from .nodes import client
from .system import LabError, run, say

BUSYBOX = "swarmguard-lab/busybox:latest"
PYTHON_BASE = "swarmguard-lab/python:latest"
# The project's own images: name -> Dockerfile, built on PYTHON_BASE when the file exists.
PROJECT_IMAGES = {
    "swarmguard-lab/stress:latest": "stress/Dockerfile",
    "swarmguard-lab/exporter:latest": "exporter/Dockerfile",
    "swarmguard-lab/receiver:latest": "receiver/Dockerfile",
}
DEBIAN_PACKAGES = ("python3", "python3-pip", "ca-certificates")
# Packages every project image copies beside its own (see each Dockerfile's COPY lines):
# part of each image's cache key, so that a change to them rebuilds the images.
SHARED_PACKAGES = ("swarmguard_config",)


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def tree_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()
                                                  and "__pycache__" not in p.parts)
        for f in files:
            h.update(str(f.relative_to(PROJECT_ROOT)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def project_dependencies() -> list[str]:
    data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


# ---------------------------------------------------------------- building (cache misses)

def _build_busybox(cfg: LabConfig, tarball: Path) -> None:
    rootfs = cfg.cache_dir / "build" / "busybox-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "tmp").mkdir()
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, check=True).stdout.split()
    for applet in applets:
        link = rootfs / "bin" / applet.decode()
        if not link.exists():
            link.symlink_to("busybox")
    _import_rootfs(cfg, rootfs, BUSYBOX, ['CMD ["/bin/sh"]'], tarball)


def _fetch_wheels(cfg: LabConfig, deps: list[str]) -> Path:
    wheels = cfg.cache_dir / "wheels" / _digest(*deps)
    if not (wheels / ".complete").exists():
        say(f"downloading wheels for the Python base image: {', '.join(deps)}")
        shutil.rmtree(wheels, ignore_errors=True)
        wheels.mkdir(parents=True)
        run(["python3", "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels), *deps])
        (wheels / ".complete").write_text("ok")
    return wheels


def _debootstrap(cfg: LabConfig) -> Path:
    """A minimal Debian rootfs with python3 and pip, cached as a directory snapshot."""
    key = _digest(cfg.debian_suite, *DEBIAN_PACKAGES)
    rootfs = cfg.cache_dir / "rootfs" / f"debian-{key}"
    if (rootfs / ".complete").exists():
        return rootfs
    say(f"debootstrap {cfg.debian_suite} minbase with {', '.join(DEBIAN_PACKAGES)} (about a minute)")
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}",
         cfg.debian_suite, str(rootfs), cfg.debian_mirror], timeout=1200)
    # Trim what an image never needs.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/locale"):
        shutil.rmtree(rootfs / sub, ignore_errors=True)
        (rootfs / sub).mkdir(parents=True, exist_ok=True)
    (rootfs / ".complete").write_text("ok")
    return rootfs


def _build_python_base(cfg: LabConfig, tarball: Path) -> None:
    deps = project_dependencies()
    wheels = _fetch_wheels(cfg, deps)
    pristine = _debootstrap(cfg)
    rootfs = cfg.cache_dir / "build" / "python-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    run(["cp", "-a", str(pristine), str(rootfs)])
    (rootfs / ".complete").unlink(missing_ok=True)
    staged = rootfs / "tmp" / "wheels"
    shutil.copytree(wheels, staged)
    say("installing the project's dependencies into the Python base image")
    run(["chroot", str(rootfs), "python3", "-m", "pip", "install", "-q", "--no-index",
         "--no-cache-dir", "--break-system-packages", "--find-links", "/tmp/wheels", *deps])
    shutil.rmtree(staged)
    _import_rootfs(cfg, rootfs, PYTHON_BASE,
                   ['ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8',
                    'CMD ["python3"]'], tarball)
    shutil.rmtree(rootfs, ignore_errors=True)


def _import_rootfs(cfg: LabConfig, rootfs: Path, tag: str, changes: list[str], tarball: Path) -> None:
    say(f"importing {tag}")
    api = client(cfg, cfg.manager, timeout=600).api
    tar_bytes = subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               capture_output=True, check=True).stdout
    repo, _, version = tag.partition(":")
    api.import_image_from_data(tar_bytes, repository=repo, tag=version or "latest", changes=changes)
    _save(cfg, tag, tarball)


def build_image(cfg: LabConfig, context: Path, dockerfile: str, tag: str, buildargs: dict) -> None:
    """docker build on the manager (never pulling: no registry), showing each step."""
    api = client(cfg, cfg.manager, timeout=900).api
    stream = api.build(path=str(context), dockerfile=dockerfile, tag=tag, rm=True,
                       forcerm=True, pull=False, decode=True, buildargs=buildargs)
    for chunk in stream:
        if "error" in chunk:
            raise LabError(f"building {tag}: {chunk['error']}")
        line = chunk.get("stream", "").strip()
        if line.startswith("Step "):
            say(f"  {line}")


def _build_project_image(cfg: LabConfig, tag: str, dockerfile: str, tarball: Path) -> None:
    say(f"building {tag} from {dockerfile}")
    build_image(cfg, PROJECT_ROOT, dockerfile, tag, {"BASE_IMAGE": PYTHON_BASE, "INSTALL_DEPS": "0"})
    _save(cfg, tag, tarball)


def _save(cfg: LabConfig, tag: str, tarball: Path) -> None:
    api = client(cfg, cfg.manager, timeout=600).api
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial")
    with open(partial, "wb") as out:
        for chunk in api.get_image(tag):
            out.write(chunk)
    partial.rename(tarball)


# ---------------------------------------------------------------- loading (every up)

def _load_everywhere(cfg: LabConfig, tag: str, tarball: Path) -> str:
    image_id = None
    for node in cfg.nodes:
        c = client(cfg, node, timeout=600)
        wanted = _tarball_image_id(tarball)
        try:
            if c.images.get(tag).id == wanted:
                image_id = wanted
                continue
        except Exception:
            pass
        with open(tarball, "rb") as data:
            loaded = c.images.load(data)
        image = loaded[0]
        repo, _, version = tag.partition(":")
        image.tag(repo, version)
        image_id = image.id
    if image_id is None:
        raise LabError(f"{tag} was not loaded anywhere")
    return image_id


def _tarball_image_id(tarball: Path) -> str:
    with tarfile.open(tarball) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    return "sha256:" + manifest[0]["Config"].split("/")[-1].removesuffix(".json")


def ensure_images(cfg: LabConfig) -> dict[str, str]:
    """Make sure every lab image is present on every node; return tag -> image ID."""
    images_dir = cfg.cache_dir / "images"
    built: dict[str, str] = {}

    busybox_tar = images_dir / f"busybox-{_digest(Path('/bin/busybox').read_bytes())}.tar"
    if not busybox_tar.exists():
        _build_busybox(cfg, busybox_tar)
    built[BUSYBOX] = _load_everywhere(cfg, BUSYBOX, busybox_tar)

    base_key = _digest(cfg.debian_suite, *DEBIAN_PACKAGES, *project_dependencies())
    base_tar = images_dir / f"python-{base_key}.tar"
    if not base_tar.exists():
        _build_python_base(cfg, base_tar)
    built[PYTHON_BASE] = _load_everywhere(cfg, PYTHON_BASE, base_tar)

    for tag, dockerfile in PROJECT_IMAGES.items():
        if not (PROJECT_ROOT / dockerfile).exists():
            continue
        package = Path(dockerfile).parent
        key = _digest(built[PYTHON_BASE], tree_digest(
            [PROJECT_ROOT / package, *(PROJECT_ROOT / p for p in SHARED_PACKAGES),
             PROJECT_ROOT / "pyproject.toml"]))
        tar = images_dir / f"{tag.split('/')[-1].split(':')[0]}-{key}.tar"
        if not tar.exists():
            _build_project_image(cfg, tag, dockerfile, tar)
        built[tag] = _load_everywhere(cfg, tag, tar)

    (cfg.state_dir / "images.json").write_text(json.dumps(built, indent=2))
    return built


def image_ids(cfg: LabConfig) -> dict[str, str]:
    path = cfg.state_dir / "images.json"
    if not path.exists():
        raise LabError("the lab has no images yet: run `python -m tests.lab up`")
    return json.loads(path.read_text())
