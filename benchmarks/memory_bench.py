"""Benchmark: memory and speed of ``python -m utils prepare`` as the data grows, one 50 MB record, Ray vs local.

Synthetic Alpaca JSONL: the real Alpaca files of ``../shared/real_data/`` (1,999 records; without
``shared/``, the package's own ``utils/data/alpaca_samples.jsonl``) repeated to N records. Each run is
``python -m utils prepare DATA --template alpaca --tokenizer <Qwen2.5> --max-length 1024 [--pack]`` in a
subprocess (the Qwen2.5 tokenizer shipped in ``utils/assets``); a thread samples the subprocess's
``/proc/PID/status`` every 50 ms: peak ``VmRSS`` (resident, includes file-backed pages of the memory-mapped
Arrow files, which the kernel can reclaim) and peak ``RssAnon`` (anonymous memory: what the process really
holds). Then the slope of peak anonymous memory against N (least squares, bytes per record).

``--baseline DIR``: the same runs with another checkout of the package (e.g. ``git archive main | tar -x -C
DIR``), on the PYTHONPATH, as the named baseline.

The 50 MB case: 100 ordinary records and one whose ``output`` holds 50 MB of text, ``--max-length 1024``.
Ray vs local: ``utils.distributed.prepare_with_ray`` on a local Ray cluster with 2 CPUs against
``prepare`` (without ``--pack``) on the same records (needs the ``ray`` extra).

    python benchmarks/memory_bench.py                          # 200k, 1M and 2M records, 50 MB, Ray (~48 min on 2 idle cores)
    python benchmarks/memory_bench.py --sizes 20000 50000      # quick
    python benchmarks/memory_bench.py --runs 200000:plain,200000:pack,1000000:pack,2000000:pack

Runs offline; writes only to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLM_HANDBOOK_SHARED", ROOT.parent / "shared"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "true"), "RAYON_NUM_THREADS": "2",
       "PYTHONHASHSEED": "0"}


def source_records() -> tuple[list[str], str]:
    real = [SHARED / "real_data" / f"llamafactory_alpaca_{lang}_demo.json" for lang in ("zh", "en")]
    if all(p.exists() for p in real):
        lines = [json.dumps(r, ensure_ascii=False) for p in real for r in json.loads(p.read_text("utf-8"))]
        return lines, " + ".join(p.name for p in real)
    path = ROOT / "utils" / "data" / "alpaca_samples.jsonl"
    return [line for line in path.read_text("utf-8").splitlines() if line.strip()], path.name


def write_data(path: Path, lines: list[str], n: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(lines[i % len(lines)])
            f.write("\n")


def _status(pid: int) -> dict[str, int]:
    found = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    found[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def measure(cmd: list[str], pythonpath: str | None = None) -> dict:
    """Run ``cmd``; peak VmRSS / RssAnon / RssFile over the process tree (sampled), wall time, exit status."""
    env = dict(ENV)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=pythonpath or str(ROOT))
    done = threading.Event()

    def sample():
        while not done.is_set():
            pids = [proc.pid]
            try:
                pids += [int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
            except OSError:
                pass
            total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
            for pid in pids:
                for k, v in _status(pid).items():
                    total[k] += v
            for k in peak:
                peak[k] = max(peak[k], total[k])
            done.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    return {"seconds": time.perf_counter() - start, "status": proc.returncode, "stdout": out, "stderr": err, **peak}


def prepare_cmd(data: Path, out: Path, tokenizer: str, pack: bool) -> list[str]:
    cmd = [sys.executable, "-m", "utils", "prepare", str(data), "--template", "alpaca", "--tokenizer", tokenizer,
           "--max-length", "1024", "--out", str(out), "--quiet"]
    return cmd + (["--pack"] if pack else [])


def gb(n: int) -> str:
    return f"{n / 1e9:.2f}"


def slope(points: list[tuple[int, int]]) -> float:
    import numpy as np

    if len({n for n, _ in points}) < 2:
        return float("nan")
    x = np.array([n for n, _ in points], dtype=float)
    y = np.array([v for _, v in points], dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def ray_vs_local(work: Path, lines: list[str], n: int, tokenizer: str) -> list[str]:
    data = work / f"ray_{n}.jsonl"
    write_data(data, lines, n)
    local = measure(prepare_cmd(data, work / "local_out", tokenizer, pack=False))
    script = (
        "import ray, sys, time; from utils.distributed import prepare_with_ray\n"
        "for attempt in range(3):  # the raylet gives its agent 15 s to start: a busy machine may need another try\n"
        "    try:\n"
        "        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address='127.0.0.1', log_to_driver=False)\n"
        "        break\n"
        "    except Exception:\n"
        "        ray.shutdown()\n"
        "t = time.perf_counter()\n"
        f"s = prepare_with_ray([{str(data)!r}], {str(work / 'ray_out')!r}, {tokenizer!r}, 'alpaca', max_length=1024)\n"
        "print('RAY_SECONDS', time.perf_counter() - t, s['rows'])\n")
    ray_run = measure([sys.executable, "-c", script])
    if ray_run["status"] != 0:
        return [f"Ray run failed: {ray_run['stderr'][-2000:]}"]
    seconds = float(ray_run["stdout"].split("RAY_SECONDS")[1].split()[0])
    return [f"| local `prepare` (1 process) | {n:,} | {local['seconds']:.1f} | {n / local['seconds']:,.0f} |",
            f"| Ray Data, local cluster, 2 CPUs (pipeline only) | {n:,} | {seconds:.1f} | {n / seconds:,.0f} |",
            f"| Ray Data, incl. cluster start/stop | {n:,} | {ray_run['seconds']:.1f} | {n / ray_run['seconds']:,.0f} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="200000:plain,200000:pack,1000000:pack,2000000:pack",
                        help="comma-separated N:plain|pack")
    parser.add_argument("--baseline", default=None, help="another checkout of the package (its root folder)")
    parser.add_argument("--baseline-runs", default="200000:pack", help="runs for the baseline (N:plain|pack)")
    parser.add_argument("--big-record-mb", type=float, default=50)
    parser.add_argument("--baseline-big-record", action="store_true", help="also run the 50 MB case on the baseline")
    parser.add_argument("--ray-records", type=int, default=50_000, help="0: skip the Ray comparison")
    args = parser.parse_args()

    from utils.models import _asset

    tokenizer = str(_asset("reference_tokenizers/qwen2_5"))
    lines, source = source_records()
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    report = [f"Synthetic Alpaca JSONL ({source}, {len(lines):,} records repeated); Qwen2.5 tokenizer; "
              f"--max-length 1024; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", "",
              "| code | N records | --pack | wall s | records/s | peak RSS GB | peak RssAnon GB | peak RssFile GB |",
              "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    slopes = {}
    try:
        plans = [("this branch", None, args.runs)]
        if args.baseline:
            plans.append(("baseline", args.baseline, args.baseline_runs))
        for name, path, runs in plans:
            points: dict[bool, list] = {False: [], True: []}
            for spec in runs.split(","):
                n_text, mode = spec.split(":")
                n, pack = int(n_text), mode == "pack"
                data = work / f"alpaca_{n}.jsonl"
                if not data.exists():
                    write_data(data, lines, n)
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                r = measure(prepare_cmd(data, out, tokenizer, pack), pythonpath=path)
                if r["status"] != 0:
                    report.append(f"| {name} | {n:,} | {pack} | failed: {r['stderr'][-300:]!r} |")
                    continue
                points[pack].append((n, r["RssAnon"]))
                report.append(f"| {name} | {n:,} | {'yes' if pack else 'no'} | {r['seconds']:.0f} | "
                              f"{n / r['seconds']:,.0f} | {gb(r['VmRSS'])} | {gb(r['RssAnon'])} | {gb(r['RssFile'])} |")
                print(report[-1], flush=True)
                shutil.rmtree(out, ignore_errors=True)
            for pack, pts in points.items():
                if len(pts) >= 2:
                    slopes[(name, pack)] = slope(pts)
        for data in work.glob("alpaca_*.jsonl"):
            data.unlink()
        report.append("")
        for (name, pack), value in slopes.items():
            report.append(f"slope of peak RssAnon vs N ({name}, {'--pack' if pack else 'no --pack'}): "
                          f"{value:.1f} bytes per record")

        # one record of 50 MB among ordinary ones
        big = work / "big_record.jsonl"
        size = int(args.big_record_mb * 1e6)
        with big.open("w", encoding="utf-8") as f:
            for i in range(100):
                f.write(lines[i % len(lines)] + "\n")
            f.write(json.dumps({"instruction": "Repeat.", "input": "", "output": "lorem ipsum " * (size // 12)}) + "\n")
        report += ["", f"One record of {args.big_record_mb:g} MB among 100 ordinary ones, --max-length 1024:", "",
                   "| code | wall s | peak RSS GB | peak RssAnon GB | dropped |", "| --- | ---: | ---: | ---: | ---: |"]
        runs = [("this branch", None)] + ([("baseline", args.baseline)] if args.baseline and args.baseline_big_record
                                          else [])
        for name, path in runs:
            out = work / "big_out"
            shutil.rmtree(out, ignore_errors=True)
            r = measure(prepare_cmd(big, out, tokenizer, pack=False), pythonpath=path)
            dropped = "?"
            if r["status"] == 0:
                dropped = json.loads((out / "stats.json").read_text())["dropped"]
            report.append(f"| {name} | {r['seconds']:.1f} | {gb(r['VmRSS'])} | {gb(r['RssAnon'])} | {dropped} |")
            print(report[-1], flush=True)
        big.unlink()

        if args.ray_records:
            try:
                import ray  # noqa: F401
            except ImportError:
                report += ["", "Ray vs local: skipped (pip install -e '.[ray]')"]
            else:
                report += ["", f"Ray Data vs local on the same {args.ray_records:,} records (no --pack):", "",
                           "| path | N records | wall s | records/s |", "| --- | ---: | ---: | ---: |"]
                report += ray_vs_local(work, lines, args.ray_records, tokenizer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report))


if __name__ == "__main__":
    main()
