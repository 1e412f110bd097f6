"""Idempotent installation of what the lab runs: Debian packages and cAdvisor."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..config import LabConfig
from .system import LabError, run, say


def missing_packages(packages: tuple[str, ...]) -> list[str]:
    missing = []
    for name in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True)
        if b"install ok installed" not in proc.stdout:
            missing.append(name)
    return missing


def install_packages(cfg: LabConfig) -> None:
    missing = missing_packages(cfg.apt_packages)
    if not missing:
        say("Debian packages already installed")
        return
    say(f"installing Debian packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def cadvisor_binary(cfg: LabConfig) -> Path:
    """cAdvisor is not in Debian 12; bullseye's package carries a static binary.

    It is fetched with a private apt configuration (its own sources and lists under the
    cache), so the system's apt state is never touched, and kept in the cache.
    """
    binary = cfg.cache_dir / "cadvisor" / "usr" / "bin" / "cadvisor"
    if binary.exists():
        return binary
    work = cfg.cache_dir / "cadvisor-apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    sources = work / "sources.list"
    sources.write_text(f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                       f"{cfg.debian_mirror} {cfg.cadvisor_suite} main\n")
    apt_opts = [
        "-o", f"Dir::Etc::SourceList={sources}", "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={work / 'lists'}", "-o", f"Dir::Cache={work / 'cache'}",
        "-o", "Dir::State::status=/dev/null", "-o", "APT::Sandbox::User=root",
    ]
    say(f"downloading cAdvisor from Debian {cfg.cadvisor_suite}")
    run(["apt-get", *apt_opts, "update", "-qq"])
    for old in work.glob("cadvisor_*.deb"):
        old.unlink()
    subprocess.run(["apt-get", *apt_opts, "download", "cadvisor"], cwd=work, check=True,
                   capture_output=True)
    debs = sorted(work.glob("cadvisor_*.deb"))
    if not debs:
        raise LabError("apt-get download cadvisor produced no .deb")
    target = cfg.cache_dir / "cadvisor"
    shutil.rmtree(target, ignore_errors=True)
    run(["dpkg", "-x", str(debs[-1]), str(target)])
    if not binary.exists():
        raise LabError(f"cadvisor binary not found in {debs[-1].name}")
    return binary
