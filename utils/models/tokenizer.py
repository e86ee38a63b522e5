"""The course's tiny byte-level BPE tokenizer, trained on the shipped corpus.

Pipeline (the same pieces GPT-2 / Llama 3 / Qwen2 tokenizers are made of):

1. pre-tokenizer: each CJK character (and CJK punctuation) split off on its own, digits split one by
   one (``Digits(individual_digits=True)``), then ``ByteLevel`` (so any text is encodable, no ``<unk>``);
2. model: BPE merges learned from our corpus (``vocab_size`` 2048, saturates near that);
3. post-processor: ``TemplateProcessing`` puts ``<s>`` (BOS) in front of every text;
4. special tokens ``<unk> <s> </s> <pad>``: BOS ``<s>``, EOS ``</s>``, PAD ``<pad>`` (distinct from EOS);
5. ``chat_template``: the manual's ``human:`` / ``assistant:`` form, replies in ``{% generation %}``.

Example:
    >>> from utils.models import load_tokenizer
    >>> tok = load_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("今天")["input_ids"])
    ['<s>', 'ä»Ĭ', 'å¤©']
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
VOCAB_SIZE = 2048

# CJK ideographs, CJK symbols/punctuation, full-width forms: each such character becomes its own piece.
CJK_PATTERN = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u201c\u201d]"

# The manual's human_assistant form (utils.templates): optional system line; per turn "human: {user}\n" and
# "assistant:" + " {reply}</s>"; turns joined by "\n". The template writes BOS itself, like LLaMA's: the
# text of apply_chat_template is tokenized without special tokens, so this is the one BOS, and the ids
# equal tokenizer(render(example, "human_assistant")) — what the chat adapter is trained on.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ messages[0]['content'] + '\n' }}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if not loop.first -%}{{ '\n' }}{%- endif -%}"
    "{{ 'human: ' + message['content'] + '\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ 'assistant:' }}{% generation %}{{ ' ' + message['content'] + eos_token }}{% endgeneration %}"
    "{%- else -%}"
    "{{ raise_exception('unknown role: ' + message['role'] + ' (expected system, user or assistant)') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'assistant:' }}{%- endif -%}"
)


def train_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """Train the byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    >>> tok = train_tokenizer(["hello world", "你好"] * 10, vocab_size=300)
    >>> tok.decode(tok("hello 你好")["input_ids"], skip_special_tokens=True)
    'hello 你好'
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK_PATTERN), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        model_max_length=512, padding_side="right", clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build(out_dir: Path) -> Path:
    """Train on :func:`utils.models.corpus.tokenizer_training_text` and save to ``out_dir``."""
    from utils.models.corpus import tokenizer_training_text

    tok = train_tokenizer(tokenizer_training_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(str(out_dir))
    return out_dir
