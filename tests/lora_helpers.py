"""A LoRA adapter that changes the model's output, for tests comparing serving backends."""

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def save_random_lora(model, out, r: int, alpha: int, seed: int, std: float, **lora_kwargs):
    """Wrap ``model`` in a LoRA adapter on every projection with random B (peft initialises B to
    zero, which would make the adapter a no-op) and save the adapter to ``out``."""
    import torch
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                  target_modules=ALL_PROJECTIONS, **lora_kwargs))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, std)
    peft_model.save_pretrained(out)
    return out
