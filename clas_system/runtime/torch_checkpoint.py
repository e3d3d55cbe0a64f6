"""The tensors of a PyTorch state-dict checkpoint in the legacy (pre-1.6, non-zip) format, read
without torch: the weights of the built-in EfficientNet-Lite ship as such a file.

The format is five pickles (magic number, protocol version, system info, the state dict whose
tensors point at storages by key, the list of storage keys) followed by each storage's bytes,
prefixed by its element count. A checkpoint is untrusted input: the unpickler resolves only the
few names a plain state dict uses and refuses every other one.
"""
import collections
import pickle
import struct

import numpy as np

from ..errors import DerivationError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                  "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


class Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class TensorView:
    """A tensor as the pickle describes it: a view (offset, size, stride) into a storage whose
    bytes come after the pickles."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self):
        flat = self.storage.data
        if not self.size:
            return flat[self.offset].copy()
        strides = [s * flat.itemsize for s in self.stride]
        return np.lib.stride_tricks.as_strided(flat[self.offset:], self.size, strides).copy()


def rebuild_tensor(storage, offset, size, stride, *_grad_and_hooks):
    return TensorView(storage, offset, size, stride)


class StateDictUnpickler(pickle.Unpickler):
    def __init__(self, stream, storages):
        super().__init__(stream)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise DerivationError(f"the checkpoint refers to {module}.{name}, which a plain state dict never does")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise DerivationError(f"the checkpoint has an unexpected storage reference {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        return self.storages.setdefault(key, Storage(storage_type.dtype, numel))


def load_state_dict(path):
    """name -> numpy array for every tensor of a legacy-format PyTorch checkpoint."""
    with open(path, "rb") as f:
        def unpickle(storages=None):
            return StateDictUnpickler(f, {} if storages is None else storages).load()
        try:
            if unpickle() != LEGACY_MAGIC:
                raise DerivationError(f"{path}: not a legacy PyTorch checkpoint")
            unpickle()  # protocol version
            unpickle()  # system info
            storages = {}
            state = unpickle(storages)
            keys = unpickle()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise DerivationError(f"{path}: cannot read the checkpoint: {err}") from err
        for key in keys:
            storage = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise DerivationError(f"{path}: the checkpoint is truncated")
            storage.data = np.frombuffer(raw, storage.dtype)
    if not isinstance(state, dict):
        raise DerivationError(f"{path}: the checkpoint holds no state dict")
    return {name: view.array() for name, view in state.items() if isinstance(view, TensorView)}
