"""What is inside a checkpoint: inspection, verification, the `.index` check, Keras files.

`inspection` lists, diffs and reads checkpoints; `verification` says whether one is intact;
`index_file` checks an `.index` table before TensorFlow reads it; `keras_files` reads the
Keras-native files (`.keras`, `.weights.h5`) the callback exports.
"""
