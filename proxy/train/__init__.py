"""Training a guide pair: DPO of a LoRA adapter on preference pairs (`w2s train-guide`)."""
