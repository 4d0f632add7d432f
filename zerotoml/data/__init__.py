"""Loaders for real data that work offline, and synthetic data with the same shapes.
Loaders return plain tensors or (images, labels) tuples. Note: notes/data.md."""

from .common import DataFormatError, images_to_float, cache_dir, download
from .text import shakespeare, shakespeare_plays, strip_play, read_text
from .batches import Batches
from .windows import Windows, blocks, next_token_windows
from .idx import read_idx, write_idx, read_idx_pair, fashion_mnist, mnist, FASHION_MNIST_CLASSES
from .cifar import cifar10, read_cifar_python, read_cifar_binary, CIFAR10_CLASSES
from .digits import digits
from .synthetic import fake_text, fake_idx_images, fake_cifar, fake_digits, blobs, blob_centers, blobs_error_bound
from .pairs import bible_pairs, read_pairs_tsv, split_pairs, filter_pairs, gale_church, bleu
from .sword import SwordModule, find_module, module_verses, read_ztext, strip_markup
