"""A GGUF model file with every tensor dequantized to F32 (metadata and tokenizer unchanged).

llama.cpp multiplies F32 weights against F32 activations, so on this file it computes what the
MLX path computes (float32 weights dequantized from the same file) up to summation order: the
test that the GGUF LoRA export is exact, separate from quantization's rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_f32_copy(source: Path, target: Path) -> Path:
    import gguf

    reader = gguf.GGUFReader(str(source))
    writer = gguf.GGUFWriter(str(target), arch=reader.fields["general.architecture"].contents())
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name == "general.file_type":
            writer.add_uint32(name, 0)  # LLAMA_FTYPE_ALL_F32
            continue
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(name, field.contents(), kind)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target
