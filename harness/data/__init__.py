"""Where the images come from and how they are scored: a TFDS name (`tfds_data`; Fashion-MNIST built
offline from Debian's package), a folder of class subfolders (`folder`) or an .npz (`arrays`), image
files decoded by Pillow (`decode`), split and digested in `splitting` and `sources`; the student's
transfer set, seeded tf.data pipelines, the consistent views of `teacher: views` (`views`),
accuracy and fidelity figures, and the bias correction of classes left out of the transfer set.

Imports the base modules and `distill` only (the bias correction edits a student's logit bias).
"""
