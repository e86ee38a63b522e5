"""The Ray Data path (``utils.distributed``) gives the local path's rows, on a local Ray cluster (127.0.0.1, 2 CPUs).

Ray is an optional extra (``pip install -e '.[ray]'``; ``make setup`` installs it): without it these tests
skip with the reason, except in CI (``CI`` set), where they fail -- as ``conftest.require_shared`` does.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import datasets
import pyarrow.dataset as pads
import pytest

from conftest import require_shared
from utils.cli import main


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        reason = "needs Ray Data, the optional extra `ray` (pip install -e '.[ray]'; `make setup` installs it)"
        if os.environ.get("CI"):
            pytest.fail("CI must have the ray extra: " + reason)
        pytest.skip(reason)
    return ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = _require_ray()
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
                     configure_logging=False)
            break
        except Exception as error:  # Ray's raylet gives its dashboard agent 15 s to start; a busy machine can miss it
            ray.shutdown()
            if attempt == 2:
                if os.environ.get("CI"):
                    raise
                pytest.skip(f"the local Ray cluster did not start 3 times ({error}); on a heavily loaded machine the "
                            "raylet's 15 s wait for its dashboard agent runs out (ray-project/ray#65983)")
    yield ray
    ray.shutdown()


SAMPLES = Path(str(resources.files("utils") / "data"))


def local_rows(tmp_path: Path, data: list[Path], argv: list[str]) -> tuple[list[dict], dict]:
    out = tmp_path / "local"
    assert main(["prepare", *map(str, data), "--out", str(out), "--quiet", *argv]) == 0
    ds = datasets.load_from_disk(str(out))
    return ds.to_list(), json.loads((out / "stats.json").read_text())


def ray_rows(out: Path) -> list[dict]:
    table = pads.dataset(sorted(map(str, out.glob("*.parquet"))), format="parquet").to_table()
    table = table.sort_by([("source_file", "ascending"), ("record_index", "ascending")])  # the stable sort key
    return table.to_pylist()


@pytest.mark.parametrize("case", ["alpaca", "qwen_chat_mixed_files"])
def test_ray_gives_the_local_rows(ray_cluster, tmp_path, case, capsys):
    from utils.distributed import prepare_with_ray

    if case == "alpaca":
        real = require_shared("real_data", "llamafactory_alpaca_zh_demo.json")
        data, template, tok, max_length = [real], "alpaca", str(require_shared("reference_tokenizers", "qwen2_5")), 256
    else:  # two files in two record forms, the Qwen2.5 chat template shipped in utils/assets
        from utils.models import _asset

        data = [SAMPLES / "sft_sharegpt.jsonl", SAMPLES / "sft_messages.jsonl"]
        template, tok, max_length = "chat_template", str(_asset("reference_tokenizers/qwen2_5")), 96
    argv = ["--template", template, "--tokenizer", tok, "--max-length", str(max_length), "--on-error", "skip"]
    expected, local_stats = local_rows(tmp_path, data, argv)
    stats = prepare_with_ray(data, tmp_path / "ray", tok, template, max_length=max_length, batch_size=128,
                             on_error="skip")
    got = ray_rows(tmp_path / "ray")
    assert len(got) == len(expected) > 0
    in_written_order = pads.dataset(sorted(map(str, (tmp_path / "ray").glob("*.parquet"))), format="parquet").to_table(
        columns=["input_ids"]).column("input_ids").to_pylist()
    for i, (row, want) in enumerate(zip(got, expected)):
        for column in ("input_ids", "attention_mask", "labels"):
            assert row[column] == want[column], (i, column)
        assert in_written_order[i] == want["input_ids"], i  # the order itself is kept, not only the key
    for key in ("records", "rows", "dropped", "truncated", "tokens", "supervised_tokens", "boundary_merges", "invalid"):
        assert stats[key] == local_stats[key], key
    if case == "alpaca":
        assert local_stats["dropped"] > 0  # max_length drops some rows: the counts are compared on a real case
    else:
        assert local_stats["invalid"] > 0  # the sample files hold bad records: skipped and counted alike
    written = json.loads((tmp_path / "ray" / "stats.json").read_text())
    assert written["rows"] == len(got)


def test_ray_reports_bad_records_with_their_location(ray_cluster, tmp_path):
    from utils.distributed import prepare_with_ray

    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join([json.dumps({"instruction": "Hi", "output": "Hello"}),
                               json.dumps({"instruction": "Hi"}),  # the reader: no output
                               json.dumps({"instruction": "Hi", "output": "a </s> b"})]) + "\n")  # the encoder
    with pytest.raises(ValueError) as info:
        prepare_with_ray([data], tmp_path / "out", None, "alpaca")
    message = str(info.value)
    assert f"{data}:2: output: missing" in message and f"{data}:3: output:" in message
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    stats = prepare_with_ray([data], tmp_path / "out", None, "alpaca", on_error="skip")
    assert (stats["records"], stats["rows"], stats["invalid"]) == (1, 1, 2)


def test_missing_ray_gives_a_clear_message(monkeypatch):
    import builtins

    import utils.distributed as dist

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install 'llm-data-handbook\[ray\]'"):
        dist._ray()
