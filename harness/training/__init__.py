"""Training: the loop (`loop`), the recipe × profile plan (`plan`), training data and disclosed substitutes
(`data`), aligned patch sampling and loader workers (`patches`), RNG/EMA/atomic checkpoint state (`state`) and
the torchrun process group (`ddp`)."""
