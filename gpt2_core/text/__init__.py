"""Chapters 1-2, from text to token windows: learning BPE merges (``bpe_train``), the BPE tokenizer
(``bpe``), the ranks file format and GPT-2's ranks offline (``ranks``), the State of the Union corpus
(``corpus``) and sliding-window training data (``windows``)."""
