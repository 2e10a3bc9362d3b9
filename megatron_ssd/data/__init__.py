"""Training data: tokenizers, packing samples into fixed-length bins, and the packed dataset the trainer reads.

Modules: `tokenizer` (HF / sentencepiece behind one interface, fingerprints), `samples` (reading sample shards),
`ffd` (first-fit-decreasing), `pack` (documents -> packed folder), `packed` (PackedDataset, collate_packed).
"""
