"""summary.md: every stage's status and its tables, from results.json's contents."""

from __future__ import annotations

import json
import sys


def summary_markdown(results: dict, args) -> str:
    env = results.get("environment", {}).get("result", {})
    lines = [f"# GPU check ({'rehearsal on the CPU' if args.rehearse else env.get('device', '?')})", "",
             f"command: `{' '.join(sys.argv)}`", "",
             "| stage | status | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {stage['status']} | {stage['seconds']:.0f} |" for name, stage in results.items()]
    lines += ["", "## Environment", "", "```", json.dumps({k: v for k, v in env.items() if k != "nvidia_smi"},
                                                          indent=2), "```"]
    if "parity" in results and results["parity"]["status"] == "ok":
        lines += ["", "## CPU against GPU", "", "| dtype | tensors | largest error | tensor | tolerance |",
                  "|---|---|---|---|---|"]
        for dtype, row in results["parity"]["result"].items():
            lines.append(f"| {dtype} | {row['tensors']} | {row['max_error']:.2e} | {row['worst_tensor']} | "
                         f"{row['tolerance']:.0e} |")
    if "kernels" in results and results["kernels"]["status"] == "ok":
        lines += ["", "## Kernels against their references", "", "| kernel | largest error | tolerance | |",
                  "|---|---|---|---|"]
        for name, row in results["kernels"]["result"].items():
            lines.append(f"| {name} | {row['max_error']:.2e} | {row['tolerance']:.0e} | "
                         f"{'ok' if row['passed'] else 'OFF'} |")
    if "throughput" in results and results["throughput"]["status"] == "ok":
        lines += ["", "## Throughput (cifar-tiny)", "",
                  "| batch | side | train img/s | inference img/s | peak MiB | train vs eager | "
                  "cost model: train / inference img/s |", "|---|---|---|---|---|---|---|"]
        for row in results["throughput"]["result"]["rows"]:
            if "error" in row:
                lines.append(f"| {row['batch_size']} | {row['side']} | {row['error']} | | | | |")
                continue
            peak = f"{row['peak_memory_mib']:.0f}" if row.get("peak_memory_mib") is not None else "-"
            lines.append(f"| {row['batch_size']} | {row['side']} | {row['train_images_per_second']:.0f} | "
                         f"{row['inference_images_per_second']:.0f} | {peak} | {row.get('train_vs_eager', 0):.2f}x | "
                         f"{_predicted(row)} |")
    if "graphs" in results and results["graphs"]["status"] == "ok":
        lines += ["", "## CUDA graph of forward + backward", "", "```", json.dumps(results["graphs"]["result"]), "```"]
    if "profile" in results and results["profile"]["status"] == "ok":
        lines += ["", "## Where a step's time goes", "", results["profile"]["result"]["table"], "",
                  results["profile"]["result"].get("operations", "")]
    if "suspects" in results and results["suspects"]["status"] == "ok":
        suspects = results["suspects"]["result"]
        fit = suspects["fit"]
        lines += ["", f"## The suspects, one by one (batch {suspects['batch_size']}; the cost model beside each)", "",
                  suspects["table"], ""]
        if "rms_error_after" in fit:
            lines += [f"Cost model refitted to these rows: root-mean-square error {100 * fit['rms_error_before']:.0f}% "
                      f"before, {100 * fit['rms_error_after']:.0f}% after; constants in cost-model-fit.json.", ""]
        else:
            lines += [f"Cost model not refitted: {fit.get('error')}", ""]
        choice = suspects.get("attention_choice", {}).get("ATTENTION_KERNELS")
        if choice:
            lines += [f"Attention: the fastest implementation per (dtype, direction), summed over both presets' "
                      f"heads (minivit/kernels/gpu/attention.py ATTENTION_KERNELS): {choice}; each case in "
                      f"attention-choice.json.", ""]
    if "training" in results and results["training"]["status"] == "ok":
        t = results["training"]["result"]
        lines += ["", "## CIFAR-10 with the GPU recipe", "", f"`{t['command']}`", "",
                  f"- {t['epochs']} epochs in {t['time_budget']:.0f} s of training, {t['images_per_second']} images/s",
                  f"- time to 80% test accuracy: {t['seconds_to_80']} s; to 90%: {t['seconds_to_90']} s",
                  f"- final test accuracy: {t['final_test_accuracy']}", "", "![curve](training-curve.png)"]
    return "\n".join(lines) + "\n"


def _predicted(row: dict) -> str:
    """The cost model's images/s for a minivit row ("train / inference"), "-" for PyTorch's."""
    train, infer = row.get("predicted_train_ms"), row.get("predicted_inference_ms")
    if not train or not infer:
        return "-"
    return f"{1000 * row['batch_size'] / train:.0f} / {1000 * row['batch_size'] / infer:.0f}"
