"""Toolkit of the course "LLM 训练数据制作手册".

Modules (one concern each, import what you need):

- ``utils.templates``  prompt / chat templates as data, rendering and segments
- ``utils.formats``    reading and validating Alpaca / ShareGPT / OpenAI-messages records
- ``utils.encode``     tokenization with prompt masking (labels = -100)
- ``utils.packing``    padding collator, packing, packing efficiency
- ``utils.models``     the offline tiny tokenizer and models shipped with the package
- ``utils.generate``   next-token distributions and hand-written decoding
- ``utils.viz``        mask views and figures
- ``utils.course``     notebook set-up shared by every chapter

Command line: ``python -m utils prepare | inspect | stats`` (see ``python -m utils --help``).
"""

__version__ = "0.1.0"
