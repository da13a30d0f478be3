"""Constants the ported models share."""

# RGB mean of DIV2K's training images, subtracted before and added after the network by the EDSR family
# (HSPAN's MeanShift) and by SPAN; float32 values, as in the official code.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
