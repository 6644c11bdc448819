"""The transfer pipeline: plain PyTorch + torchvision, with no web, queue or database imports.

It can be used, tested and benchmarked on its own: build a backbone with a new head, load image data,
train it with a strategy, save a checkpoint, and predict.
"""
