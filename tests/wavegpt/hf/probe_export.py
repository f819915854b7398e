"""Run as a script in a fresh process: loads an exported dir with transformers alone, writes
its logits on the given sequences, its greedy continuation and a pipeline's output, and proves
that wavelab was never imported. argv: model_dir, inputs.pt, prompt, max_new_tokens, out.pt."""

import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model_dir, inputs, prompt, new, out = sys.argv[1:]
model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(model_dir)
given = torch.load(inputs, weights_only=True)
with torch.no_grad():
    logits = model(given["ids"]).logits
    with_prev = None
    if "prev" in given:
        with_prev = model(given["ids"], prev_input_ids=given["prev"]).logits
    prompt_ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    greedy = model.generate(prompt_ids, max_new_tokens=int(new), do_sample=False)
generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
generated = generator(prompt, max_new_tokens=4, do_sample=False)[0]["generated_text"]
result = {"logits": logits, "greedy": greedy, "class": type(model).__name__}
if with_prev is not None:
    result["with_prev"] = with_prev
result["pipeline"] = generated
result["wavelab_imported"] = any(m.split(".")[0] == "wavelab" for m in sys.modules)
torch.save(result, out)
