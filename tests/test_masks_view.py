"""utils.viz.masks: the mask views show every token once, with the right label, and make bugs visible."""

from __future__ import annotations

import html
import re

import pytest

from utils.packing import pack
from utils.viz import mask_ansi, mask_html, mask_table, token_views

ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")
PROMPT = "Below is an instruction.\n\n### Instruction:\n写一首诗 🎉\n\n### Response:"
REPLIES = [" 床前明月光 😀 ok", "\nline two\ttab", "你好，世界", "🎉 emoji first", " plain English."]


def decode(tok, ids):
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def make_row(tok, reply: str, prompt: str = PROMPT):
    """A hand-made encoded row: the prompt masked, the reply and EOS supervised."""
    prompt_ids = tok(prompt)["input_ids"]
    reply_ids = tok(reply, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    return {"input_ids": prompt_ids + reply_ids, "labels": [-100] * len(prompt_ids) + reply_ids}


@pytest.mark.parametrize("reply", REPLIES)
def test_views_cover_every_token_once_and_rebuild_the_text(any_tokenizer, reply):
    tok = any_tokenizer
    row = make_row(tok, reply)
    views = token_views(row, tok)
    assert [i for v in views for i in range(v.start, v.end)] == list(range(len(row["input_ids"])))
    assert [i for v in views for i in v.ids] == row["input_ids"]
    assert "".join(v.text for v in views) == decode(tok, row["input_ids"])
    for v in views:
        labels = row["labels"][v.start:v.end]
        expected = {"supervised"} if all(x != -100 for x in labels) else \
            {"masked"} if all(x == -100 for x in labels) else {"mixed"}
        assert {v.kind} == expected
        assert v.special == any(i in tok.all_special_ids for i in v.ids)
    # the supervised boxes spell out the reply and its EOS
    supervised = "".join(v.text for v in views if v.kind == "supervised")
    n_prompt = row["labels"].count(-100)
    assert supervised == decode(tok, row["input_ids"])[len(decode(tok, row["input_ids"][:n_prompt])):]


def test_table_has_one_row_per_token_with_id_label_and_supervised(any_tokenizer):
    tok = any_tokenizer
    row = make_row(tok, REPLIES[0])
    table = mask_table(row, tok)
    assert list(table.columns) == ["token", "id", "label", "supervised"]
    assert table["id"].tolist() == row["input_ids"]
    assert table["label"].tolist() == row["labels"]
    assert table["supervised"].tolist() == [x != -100 for x in row["labels"]]
    assert table["token"].iloc[-1] == decode(tok, [tok.eos_token_id])


def test_whitespace_and_newlines_are_visible():
    from conftest import load_reference_tokenizer

    tok = load_reference_tokenizer("gpt2")
    row = make_row(tok, "\nline two\ttab")
    plain = mask_ansi(row, tok, color=False)
    assert "[⏎\n|line|·two|→|tab|<|endoftext|>]" in plain
    assert "Response|:[" in plain
    tokens = mask_table(row, tok)["token"].tolist()
    assert "·Response" in tokens and "·two" in tokens


def test_plain_text_brackets_exactly_the_supervised_tokens(reference_tokenizer):
    tok = reference_tokenizer
    row = make_row(tok, " plain English.")
    plain = mask_ansi(row, tok, color=False)
    inside = re.findall(r"\[(.*?)\]$", plain, flags=re.S)
    eos = decode(tok, [tok.eos_token_id])
    assert inside and inside[0].replace("|", "").replace("·", " ").endswith("English." + eos.replace("|", ""))
    assert plain.count("[") - eos.count("[") == 1


def test_colour_view_strips_to_the_visible_text(reference_tokenizer):
    tok = reference_tokenizer
    row = make_row(tok, REPLIES[0])
    coloured = mask_ansi(row, tok)
    views = token_views(row, tok)
    assert ANSI_CODE.sub("", coloured) == "".join(v.visible + ("\n" if "\n" in v.text else "") for v in views)
    assert coloured.count("\x1b[30;42m") + coloured.count("\x1b[30;102m") + \
        coloured.count("\x1b[30;42;1;4m") + coloured.count("\x1b[30;102;1;4m") == \
        sum(v.kind == "supervised" for v in views)


def test_html_escapes_and_marks_every_token(reference_tokenizer):
    tok = reference_tokenizer
    row = make_row(tok, REPLIES[0])
    page = mask_html(row, tok)
    views = token_views(row, tok)
    spans = re.findall(r'<span style="([^"]*)" title="([^"]*)">(.*?)</span>', page)
    assert [html.unescape(text) for _, _, text in spans] == [v.visible for v in views]
    assert "<s>" not in re.sub(r"<(/?)(div|span|br)\b", "", page)  # special tokens are escaped
    assert sum("outline" in style for style, _, _ in spans) == sum(v.special for v in views)
    last = html.unescape(spans[-1][1])
    assert last.endswith(f"{tok.eos_token_id}→{tok.eos_token_id}")
    assert f"{len(row['input_ids'])} tokens, {sum(x != -100 for x in row['labels'])} supervised" in page


def test_wrong_labels_stand_out():
    """Labels shifted by one (the model shifts; the data must not) are shown as errors, in red."""
    from conftest import load_reference_tokenizer

    tok = load_reference_tokenizer("gpt2")
    row = make_row(tok, " plain English.")
    shifted = {"input_ids": row["input_ids"], "labels": row["labels"][1:] + [-100]}
    kinds = {v.kind for v in token_views(shifted, tok)}
    assert "wrong" in kinds
    assert "{" in mask_ansi(shifted, tok, color=False)
    assert "\x1b[97;41m" in mask_ansi(shifted, tok) or "\x1b[97;101m" in mask_ansi(shifted, tok)
    assert "label ≠ input_id" in mask_html(shifted, tok)
    assert "label ≠ input_id" not in mask_html(row, tok)


def test_pad_equal_to_eos_is_still_shown_supervised():
    from conftest import load_reference_tokenizer

    tok = load_reference_tokenizer("gpt2")  # GPT-2 has no pad token; the usual fix is pad = eos
    row = make_row(tok, " done")
    assert row["input_ids"][-1] == tok.eos_token_id
    assert token_views(row, tok)[-1].kind == "supervised"


def test_packed_rows_mark_each_example_start(reference_tokenizer):
    tok = reference_tokenizer
    rows = [make_row(tok, reply) for reply in REPLIES[:3]]
    (packed,) = pack(rows, max_length=10_000, strategy="in_order")
    assert mask_ansi(packed, tok, color=False).count("‖") == 2
    assert mask_ansi(packed, tok).count("‖") == 2
    assert mask_html(packed, tok).count("‖") == 2
    views = token_views(packed, tok)
    assert sum(v.example_start for v in views) == 2


def test_rejects_rows_whose_labels_do_not_match_ids():
    from conftest import load_reference_tokenizer

    with pytest.raises(ValueError, match="labels has 1 values but input_ids has 2"):
        token_views({"input_ids": [1, 2], "labels": [1]}, load_reference_tokenizer("gpt2"))


def test_mask_views_do_not_import_matplotlib():
    """The terminal view (``python -m utils inspect``) must not pay for matplotlib; figures import it on use."""
    import subprocess
    import sys

    code = ("import sys\nfrom utils.viz import mask_ansi, show_mask\nassert 'matplotlib' not in sys.modules\n"
            "from utils.viz import plot_loss_curve\nassert 'matplotlib' in sys.modules\n"
            "import utils.viz as v\nassert set(v.__all__) <= set(dir(v))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_chinese_legend_on_request(reference_tokenizer):
    """``lang="zh"``: legend and count in Chinese only; the default keeps its bilingual legend."""
    tok = reference_tokenizer
    row = make_row(tok, REPLIES[0])
    n, m = len(row["input_ids"]), sum(x != -100 for x in row["labels"])
    zh = mask_html(row, tok, lang="zh")
    header = re.search(r'<div style="margin-bottom:4px">(.*?)</div>', zh).group(1)
    keys = [html.unescape(k) for k in re.findall(r"<span[^>]*>(.*?)</span>", header)]
    assert keys == ["参与训练（计算损失）", "掩掉（label = -100，不计算损失）", f"共 {n} 个词元，{m} 个参与训练"]
    assert "supervised" not in header and "tokens" not in header
    # the token boxes are the same as with the default legend
    body = lambda page: page[page.index("</div>"):]  # noqa: E731
    assert body(zh) == body(mask_html(row, tok))
    assert f"{n} tokens, {m} supervised" in mask_html(row, tok)
    shifted = {"input_ids": row["input_ids"], "labels": row["labels"][1:] + [-100]}
    assert "标签错误（label ≠ input_id）" in mask_html(shifted, tok, lang="zh")
    with pytest.raises(ValueError, match="lang must be one of"):
        mask_html(row, tok, lang="fr")


def test_chatml_special_tokens_are_outlined_boxes_of_their_own():
    """A real ChatML row (Qwen2.5): every <|im_start|> / <|im_end|> is one outlined box, never merged
    with its neighbours, and the newline after <|im_end|> is a box of its own."""
    from utils.models import load_reference_tokenizer

    tok = load_reference_tokenizer("qwen2_5")
    text = tok.apply_chat_template([{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hi 你好"}],
                                   tokenize=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    views = token_views({"input_ids": ids}, tok)
    specials = [v for v in views if v.special]
    assert [v.text for v in specials] == ["<|im_start|>", "<|im_end|>"] * 3
    assert all(len(v.ids) == 1 for v in specials)
    after = [views[views.index(v) + 1].text for v in specials if v.text == "<|im_end|>"]
    assert after == ["\n"] * 3
    page = mask_html({"input_ids": ids}, tok, lang="zh")
    outlined = re.findall(r'<span style="[^"]*outline[^"]*" title="[^"]*">(.*?)</span>', page)
    assert [html.unescape(t) for t in outlined] == ["<|im_start|>", "<|im_end|>"] * 3


def test_notebook_view_has_a_chinese_legend_by_default(tok):
    from utils.encode import encode
    from utils.viz import show_mask

    row = encode({"instruction": "Hi", "output": "Hello"}, tok, "alpaca")
    html = show_mask(row, tok).data
    assert "参与训练（计算损失）" in html and "个参与训练" in html
    assert "supervised 计算损失" not in html and " tokens, " not in html
