"""A bounded load test of the course's server (utils.serve, `transformers serve` on 127.0.0.1).

    python benchmarks/serve_bench.py                     # 200 requests, 8 at a time
    python benchmarks/serve_bench.py --requests 40 --concurrency 4 --json results.json

Mixed requests with the real `openai` client: completions on the base model, chat on the chat model,
the same chat requests as completions of the rendered chat template, each streamed and not. Greedy
(temperature 0), so every answer must equal the in-process greedy answer (utils.generate.complete),
which the server's sequential answers are checked against first (a streamed answer that max_tokens
cuts inside a multi-byte character lacks the trailing U+FFFD of the non-streamed one: counted apart). Prints p50 / p95 latency and
requests/s; exits non-zero on any failure or any different answer. Not a timed test: numbers depend on
the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_TOKENS = 24
PROMPTS = ["How are you?", "The chicken crossed the", "今天天气真", "Once upon a time", "我们明天"]
QUESTIONS = ["What is the capital of France?", "1+1=?", "哭的反义词是什么？", "What is the capital of Japan?",
             "你好"]


def requests_mix(tok) -> list[dict]:
    """The distinct requests: (kind, model, input); each is sent streamed and not."""
    mix = [{"kind": "completion", "model": "tiny-base", "prompt": p} for p in PROMPTS]
    for q in QUESTIONS:
        messages = [{"role": "user", "content": q}]
        mix.append({"kind": "chat", "model": "tiny-chat", "messages": messages})
        mix.append({"kind": "chat-as-completion", "model": "tiny-chat",
                    "prompt": tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)})
    return mix


def send(client, req: dict, stream: bool) -> tuple[str, float, float | None]:
    """(answer text, latency s, time to first chunk s or None)."""
    t0 = time.perf_counter()
    first = None
    common = {"model": req["model"], "max_tokens": MAX_TOKENS, "temperature": 0}
    if "messages" in req:
        r = client.chat.completions.create(messages=req["messages"], stream=stream, **common)
        if not stream:
            return r.choices[0].message.content, time.perf_counter() - t0, None
        parts = []
        for chunk in r:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - t0
                parts.append(chunk.choices[0].delta.content)
    else:
        r = client.completions.create(prompt=req["prompt"], stream=stream, **common)
        if not stream:
            return r.choices[0].text, time.perf_counter() - t0, None
        parts = []
        for chunk in r:
            if chunk.choices and chunk.choices[0].text:
                first = first or time.perf_counter() - t0
                parts.append(chunk.choices[0].text)
    return "".join(parts), time.perf_counter() - t0, first


def same(text: str, expected: str, stream: bool) -> bool:
    """A streamed answer cut by max_tokens in the middle of a character (byte-level tokens) lacks the
    trailing U+FFFD that decoding the non-streamed ids gives: the streamer holds incomplete bytes back."""
    return text == expected or (stream and expected.endswith("\ufffd") and text == expected.rstrip("\ufffd"))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)

    import torch

    from utils import serve
    from utils.generate import complete
    from utils.models import load_causal_lm, load_chat_lm, load_tokenizer

    import warnings

    import transformers

    torch.set_num_threads(2)
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    tok = load_tokenizer()
    local = {"tiny-base": load_causal_lm(), "tiny-chat": load_chat_lm()}
    mix = requests_mix(tok)
    expected = []
    for req in mix:  # in-process greedy; a chat request's text is its rendered template
        text = req.get("prompt") or tok.apply_chat_template(req["messages"], add_generation_prompt=True,
                                                            tokenize=False)
        expected.append(complete(local[req["model"]], tok, text, max_new_tokens=MAX_TOKENS))

    t_start = time.perf_counter()
    with serve.start(verbose=False, reuse=False) as server:
        startup = time.perf_counter() - t_start
        client = server.client(max_retries=0, timeout=300)
        failures: list[str] = []
        for i, req in enumerate(mix):  # sequential: the reference the concurrent answers must equal
            for stream in (False, True):
                text, _, _ = send(client, req, stream)
                if not same(text, expected[i], stream):
                    failures.append(f"sequential {req['kind']} stream={stream}: {text!r} != {expected[i]!r}")

        jobs = [(n % len(mix), (n // len(mix)) % 2 == 1) for n in range(args.requests)]

        def run(job):
            i, stream = job
            try:
                text, latency, first = send(client, mix[i], stream)
            except Exception as err:  # a failure is counted, not raised
                return i, stream, None, float("nan"), None, f"{type(err).__name__}: {err}"
            return i, stream, text, latency, first, None

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(run, jobs))
        wall = time.perf_counter() - t0
        health_after = server.running()

    errors = [r for r in results if r[5] is not None]
    different = [r for r in results if r[5] is None and not same(r[2], expected[r[0]], r[1])]
    cut = sum(1 for r in results if r[5] is None and r[1] and r[2] != expected[r[0]] and same(r[2], expected[r[0]], True))
    failures += [f"{mix[i]['kind']} stream={s}: {e}" for i, s, _, _, _, e in errors]
    failures += [f"{mix[i]['kind']} stream={s}: {t!r} != {expected[i]!r}" for i, s, t, _, _, _ in different]
    ok = [r for r in results if r[5] is None]
    latencies = [r[3] for r in ok]
    firsts = [r[4] for r in ok if r[4] is not None]

    print(f"server start-up (checkpoints, process, /health, both models loaded): {startup:.1f} s")
    print(f"{args.requests} requests, {args.concurrency} concurrent, max_tokens={MAX_TOKENS}, greedy; "
          f"{len(mix)} distinct requests x streamed / not")
    print(f"failures: {len(errors)}   answers different from sequential greedy: {len(different)}   "
          f"server alive after: {health_after}")
    print(f"streamed answers without the trailing U+FFFD of a character cut by max_tokens: {cut}")
    print(f"wall {wall:.1f} s   {len(results) / wall:.2f} requests/s")
    print("| requests | n | p50 latency (s) | p95 latency (s) |")
    print("| --- | ---: | ---: | ---: |")
    rows = {"all": ok}
    for kind in ("completion", "chat", "chat-as-completion"):
        for stream in (False, True):
            rows[f"{kind}{' (stream)' if stream else ''}"] = [r for r in ok if mix[r[0]]["kind"] == kind
                                                              and r[1] == stream]
    summary = {}
    for name, rs in rows.items():
        lat = [r[3] for r in rs]
        if lat:
            summary[name] = {"n": len(lat), "p50": pct(lat, 50), "p95": pct(lat, 95)}
            print(f"| {name} | {len(lat)} | {summary[name]['p50']:.2f} | {summary[name]['p95']:.2f} |")
    if firsts:
        print(f"streamed: time to first chunk p50 {pct(firsts, 50):.2f} s, p95 {pct(firsts, 95):.2f} s")
    for line in failures[:20]:
        print("FAIL", line)
    if args.json:
        args.json.write_text(json.dumps({"requests": args.requests, "concurrency": args.concurrency,
                                         "startup_s": startup, "wall_s": wall,
                                         "requests_per_s": len(results) / wall, "failures": len(failures), "streamed_cut_characters": cut,
                                         "latency": summary, "p50_all": pct(latencies, 50) if latencies else None,
                                         "load_average": os.getloadavg()}, indent=2))
    return 1 if failures or not health_after else 0


if __name__ == "__main__":
    sys.exit(main())
