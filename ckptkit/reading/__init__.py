"""What is inside a checkpoint, read without TensorFlow where the format allows.

`bundle` reads a tensor bundle (`.index` and data files) in plain Python, through `table` (the
index's LevelDB-style table), `bundle_protos` (its protobuf messages) and `slice_keys` (where the
parts of partitioned variables lie); `index_file` checks an index before anything reads through
it; `inspection` lists, diffs and reads checkpoints; `verification` says whether one is intact;
`weights_export` writes the weights for other frameworks; `keras_files` reads the Keras-native
files (`.keras`, `.weights.h5`) the callback exports.
"""
