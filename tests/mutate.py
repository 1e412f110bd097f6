"""Mutation testing: how many small wrong versions of the product the unit tests notice.

    make mutate                                  # fresh full run, then the score table
    make mutate MUTATE_ONLY=receiver/storm.py    # fresh run, only these modules' mutants tested
    python -m tests.mutate --report              # the table again, from the last run
    python -m tests.mutate --survivors receiver/decisions.py   # what the tests missed

mutmut (configured in pyproject.toml, [tool.mutmut]: the modules it mutates and the spec
files it runs) makes each mutant: a comparison flipped, `<` turned into `<=`, `and` into
`or`, a constant or string changed, an argument dropped, a return value replaced... For
each mutant it runs, with `-x`, only the tests of those spec files that called the mutated
function. A mutant is killed when a test fails, survives when all pass.

At the end: a table per module (killed / total / %), and artifacts/mutate.json with the
counts and every surviving mutant as a one-line diff. Survivors that cannot change
behaviour are listed, with a reason each, in tests/mutate_equivalent.toml; they are left
out of the score (and reported when they no longer match any mutant).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
EQUIVALENT = ROOT / "tests" / "mutate_equivalent.toml"
ARTIFACT = Path(os.environ.get("SWARMGUARD_ARTIFACTS", ROOT / "artifacts")) / "mutate.json"

# mutmut's exit codes per mutant, in the words of this report. A timeout (the tests hang
# or loop under the mutant) counts as killed: the tests did notice.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no_tests", 33: "no_tests",
          34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout",
          255: "timeout", 37: "killed"}
DETECTED = {"killed", "timeout"}

MUTANT_NAME = re.compile(r"^(?P<func>.+)__mutmut_(?P<n>\d+|orig)$")


def progress(message: str) -> None:
    print(f"[mutate {time.strftime('%H:%M:%S')}] {message}", flush=True)


def modules() -> list[str]:
    """The modules mutated and scored: pyproject's list, or the part of it named in
    $MUTATE_ONLY (paths separated by commas or spaces)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    listed = list(config["only_mutate"])
    only = selected()
    if not only:
        return listed
    unknown = [m for m in only if m not in listed]
    if unknown:
        raise SystemExit(f"MUTATE_ONLY names modules not in [tool.mutmut] only_mutate: {unknown}")
    return [m for m in listed if m in only]


def selected() -> list[str]:
    return [m for m in re.split(r"[,\s]+", os.environ.get("MUTATE_ONLY", "")) if m]


def mutant_pattern(module: str) -> str:
    """mutmut's name pattern for every mutant of `module` (receiver/storm.py -> receiver.storm.*)."""
    return module.removesuffix(".py").replace("/", ".") + ".*"


def function_sources(module: str) -> dict[str, str]:
    """Every function in mutmut's copy of `module`, by its mangled name."""
    path = MUTANTS / module
    text = path.read_text()
    lines = text.splitlines()
    out = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and "__mutmut_" in node.name:
            out[node.name] = "\n".join(lines[node.lineno - 1:node.end_lineno])
    return out


def mutation(sources: dict[str, str], key: str) -> tuple[str, str, str]:
    """(function, original lines, mutated lines) of one mutant, lines stripped and joined."""
    mangled = key.rsplit(".", 1)[1]
    match = MUTANT_NAME.match(mangled)
    func = match["func"]
    orig = sources.get(f"{func}__mutmut_orig", "")
    mutant = sources.get(mangled, "").replace(mangled, f"{func}__mutmut_orig", 1)
    before, after = [], []
    for line in difflib.unified_diff(orig.splitlines(), mutant.splitlines(), n=0, lineterm=""):
        if line.startswith(("---", "+++", "@@")):
            continue
        if line.startswith("-"):
            before.append(line[1:].strip())
        elif line.startswith("+"):
            after.append(line[1:].strip())
    # mutmut's names: x_<function>, xǁ<Class>ǁ<method>
    name = (func.removeprefix("x_") if func.startswith("x_")
            else ".".join(p for p in func.removeprefix("x").split("ǁ") if p))
    return name, " / ".join(before), " / ".join(after)


def load_equivalent() -> list[dict]:
    if not EQUIVALENT.exists():
        return []
    return tomllib.loads(EQUIVALENT.read_text()).get("equivalent", [])


def collect() -> dict:
    """Counts per module and the survivors, from mutmut's result files under mutants/."""
    equivalent = load_equivalent()
    used = [False] * len(equivalent)
    per_module, survivors, excluded = {}, [], []
    for module in modules():
        meta_path = MUTANTS / f"{module}.meta"
        if not meta_path.exists():
            continue
        codes = json.loads(meta_path.read_text())["exit_code_by_key"]
        sources = function_sources(module)
        counts = Counter()
        for key, code in sorted(codes.items(), key=lambda kv: _order(kv[0])):
            status = "not_checked" if code is None else STATUS.get(code, "suspicious")
            if status in ("survived", "no_tests"):
                func, before, after = mutation(sources, key)
                entry = {"module": module, "function": func, "before": before,
                         "after": after, "status": status, "mutant": key}
                hit = next((i for i, e in enumerate(equivalent)
                            if e["module"] == module and e["function"] == func
                            and e["before"] == before and e["after"] == after), None)
                if hit is not None:
                    used[hit] = True
                    entry["why"] = equivalent[hit]["why"]
                    excluded.append(entry)
                    status = "equivalent"
                else:
                    survivors.append(entry)
            counts[status] += 1
        total = sum(counts.values())
        detected = sum(counts[s] for s in DETECTED)
        scored = total - counts["equivalent"]
        per_module[module] = {
            "total": total, "killed": counts["killed"], "timeout": counts["timeout"],
            "survived": counts["survived"], "no_tests": counts["no_tests"],
            "equivalent": counts["equivalent"],
            "other": total - detected - counts["survived"] - counts["no_tests"]
            - counts["equivalent"],
            "score_percent": round(100 * detected / scored, 1) if scored else None,
        }
    stale = [e for e, u in zip(equivalent, used) if not u and e["module"] in per_module]
    return {"modules": per_module, "survivors": survivors, "equivalent": excluded,
            "stale_equivalent_entries": stale}


def _order(key: str) -> tuple[str, int]:
    mangled = key.rsplit(".", 1)[1]
    match = MUTANT_NAME.match(mangled)
    return (match["func"], int(match["n"]) if match["n"].isdigit() else -1)


def table(per_module: dict) -> str:
    headers = ["module", "killed", "total", "%", "survived", "no tests", "equivalent"]
    rows = []
    totals = Counter()
    for module, c in per_module.items():
        detected = c["killed"] + c["timeout"]
        rows.append([module, detected, c["total"] - c["equivalent"], _pct(c["score_percent"]),
                     c["survived"], c["no_tests"], c["equivalent"]])
        for k in ("killed", "timeout", "total", "survived", "no_tests", "equivalent"):
            totals[k] += c[k]
    scored = totals["total"] - totals["equivalent"]
    detected = totals["killed"] + totals["timeout"]
    rows.append(["all", detected, scored,
                 _pct(round(100 * detected / scored, 1) if scored else None),
                 totals["survived"], totals["no_tests"], totals["equivalent"]])
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                              for i, (v, w) in enumerate(zip(r, widths)))
    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows[:-1]] + ["  ".join("-" * w for w in widths), fmt(rows[-1])]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(duration: float | None = None) -> int:
    if not MUTANTS.exists():
        print("No mutants/ folder: run `make mutate` first.", file=sys.stderr)
        return 1
    result = collect()
    print()
    print(table(result["modules"]))
    print("\n(killed: a unit test failed, or hung, under the mutant; % = killed / total; "
          "equivalent mutants, listed in tests/mutate_equivalent.toml, are left out)")
    for entry in result["stale_equivalent_entries"]:
        print(f"note: no mutant matches the equivalent entry {entry['module']} "
              f"{entry['function']}: {entry['before']!r} -> {entry['after']!r}")
    data = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "duration_seconds": None if duration is None else round(duration),
            "mutmut": _mutmut_version(), "cpus": os.cpu_count(), **result}
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    print(f"wrote {ARTIFACT} ({len(result['survivors'])} surviving mutants listed)")
    return 0


def survivors(module: str | None) -> int:
    result = collect()
    for s in result["survivors"]:
        if module and s["module"] != module:
            continue
        print(f"{s['module']}  {s['function']}  [{s['status']}]  {s['mutant']}")
        print(f"    - {s['before']}")
        print(f"    + {s['after']}")
    return 0


def run(jobs: int) -> int:
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"
    progress(f"mutating {len(modules())} modules with mutmut, {jobs} worker(s); a fresh run")
    shutil.rmtree(MUTANTS, ignore_errors=True)
    started = time.monotonic()
    # mutmut prints its own progress: generating, the clean test run, then a live count of
    # mutants tried (killed, survived, no tests, ...). With MUTATE_ONLY, mutmut still makes
    # every mutant but tests only those of the selected modules.
    patterns = [mutant_pattern(m) for m in modules()] if selected() else []
    code = subprocess.call([mutmut, "run", "--max-children", str(jobs), *patterns], cwd=ROOT)
    duration = time.monotonic() - started
    print()
    progress(f"mutmut finished in {duration / 60:.1f} min (exit code {code})")
    if code != 0:
        return code
    return report(duration)


def _mutmut_version() -> str | None:
    try:
        from importlib.metadata import version
        return version("mutmut")
    except Exception:  # not installed: the report still reads mutants/
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")),
                        help="mutants tested at once (default 2, or $MUTATE_JOBS)")
    parser.add_argument("--report", action="store_true",
                        help="no run: the table and artifacts/mutate.json from mutants/")
    parser.add_argument("--survivors", nargs="?", const="", metavar="MODULE",
                        help="no run: print each surviving mutant (of MODULE) as a diff")
    args = parser.parse_args(argv)
    if args.survivors is not None:
        return survivors(args.survivors or None)
    if args.report:
        return report()
    return run(args.jobs)


if __name__ == "__main__":
    sys.exit(main())
