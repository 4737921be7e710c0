"""The test-time views a model's answer averages: the picture turned (and mirrored, or
cropped to its centre) 8 ways. Dermoscopy has no 'up', so each view is as good a look
at the lesion as the picture itself; view 0 is always the picture itself."""

from __future__ import annotations


def dihedral_views(x):
    """The 8 flips/90-degree rotations of a batch (NHWC): dermoscopy has no 'up'."""
    import tensorflow as tf

    views = []
    for k in range(4):
        rotated = tf.image.rot90(x, k)
        views += [rotated, tf.image.flip_left_right(rotated)]
    return views


CENTRE_SHARE = 0.8  # the side of the central crop in the quarter-turns-and-centre views


def centre_crop(x, share: float = CENTRE_SHARE):
    """The central ``share`` of each side of a batch (NHWC), stretched back to its size;
    bilinear (ResizeBilinear, which TFLite runs too): antialiasing only matters when shrinking."""
    import tensorflow as tf

    size = x.shape[1]
    margin = round(size * (1 - share) / 2)
    return tf.image.resize(x[:, margin : size - margin, margin : size - margin, :], (size, size))


def turns_and_centre_views(x):
    """The 4 quarter turns of a batch (NHWC) and of its central 80 % (each side, stretched
    back to the input size). Dermoscopy has no 'up', and the central crop reads the lesion
    without the picture's rim (a dermoscope's dark round field, rulers, vignetting), which
    differs from one camera to the next; view 0 is the picture itself."""
    import tensorflow as tf

    centre = centre_crop(x)
    return [tf.image.rot90(x, k) for k in range(4)] + [tf.image.rot90(centre, k) for k in range(4)]


# a model's test-time views, by the name its manifest gives them ("tta_views"); models that
# do not name theirs were evaluated with the dihedral ones
TTA_VIEWS = {"dihedral": dihedral_views, "turns_and_centre": turns_and_centre_views}
DEFAULT_TTA_VIEWS = "dihedral"
