"""Toolkit of the course "LLM 训练数据制作手册".

Modules (one concern each, import what you need):

- ``utils.templates``  prompt / chat templates as data, rendering and segments
- ``utils.formats``    reading and validating records of every form and kind (SFT, preference, KTO,
                       pretraining text; Alpaca, ShareGPT, OpenAI messages, Firefly, TRL, tool calls;
                       JSONL / JSON / Parquet / .txt) into one normalized form per kind
- ``utils.encode``     SFT: tokenization with prompt masking (labels = -100)
- ``utils.preference`` DPO / ORPO / KTO rows from the same segments (TRL's columns)
- ``utils.pretrain``   pretraining text: documents + EOS cut into blocks, every token trained
- ``utils.packing``    padding collator, packing (whole examples, or wrapped blocks), packing efficiency
- ``utils.models``     the offline tiny tokenizer and models shipped with the package
- ``utils.generate``   next-token distributions and hand-written decoding
- ``utils.viz``        mask views and figures
- ``utils.course``     notebook set-up shared by every chapter

Where a data kind goes: reading and validating it in ``utils.formats`` (its normalized record form),
turning it into training rows in its sibling module beside ``utils.encode``.

Command line: ``python -m utils prepare | inspect | stats`` for every kind (``--kind``; see
``python -m utils --help``).
"""

from utils._version import __version__
