"""The PyTorch side of a throughput row: transformers' ViT with minivit's config, eager or torch.compile,
float32, TF32 or AMP float16, timed as minivit's side is (median of synchronised steps after a warm-up).

    python benchmarks/gpu_session/torch_side.py ROOT OPTIONS_JSON     (prints one JSON line)

It runs in its own process (throughput.py starts it), so that PyTorch's CUDA context and memory pool
never share a process with CuPy's, and a compilation that runs over its time can be killed.
"""

import json
import sys
import time

import numpy as np
import torch


def main(root: str, options: dict) -> dict:
    sys.path.insert(0, root)
    from transformers import ViTConfig as HFConfig
    from transformers import ViTForImageClassification

    from minivit import ViTConfig, preset
    from minivit.convert import hf_config_kwargs

    device = options["device"]
    torch.backends.cuda.matmul.allow_tf32 = options["tf32"]
    amp = options["amp"] and device == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    config = preset(options["preset"]) if options["preset"] else ViTConfig(**options["config"])
    model = ViTForImageClassification(HFConfig(**hf_config_kwargs(config))).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    forward = torch.compile(model) if options["compiled"] else model
    B = options["batch_size"]
    images = torch.randn(B, 3, config.image_size, config.image_size, device=device)
    labels = torch.randint(0, config.num_labels, (B,), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.float16, enabled=amp):
            logits = forward(pixel_values=images).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels, label_smoothing=0.1)
        if amp:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

    def inference():
        model.eval()
        with torch.inference_mode(), torch.autocast(device, dtype=torch.float16, enabled=amp):
            forward(pixel_values=images)

    def median(function):
        for _ in range(options["warmup"]):
            function()
        sync()
        times = []
        for _ in range(options["steps"]):
            start = time.perf_counter()
            function()
            sync()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    compile_start = time.perf_counter()
    train = median(train_step)
    infer = median(inference)
    return {"train_images_per_second": B / train, "inference_images_per_second": B / infer,
            "peak_memory_mib": torch.cuda.max_memory_reserved() / 2**20 if device == "cuda" else None,
            "seconds_with_compilation": time.perf_counter() - compile_start}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], json.loads(sys.argv[2]))))
