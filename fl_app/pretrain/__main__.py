"""``python -m fl_app.pretrain [key=value ...]``: run the recipe, write the checkpoint.

python -m fl_app.pretrain                               # conf/pretrain.yaml as committed
python -m fl_app.pretrain train.steps=200 out=/tmp/pt   # a quick look
python -m fl_app.pretrain ship=true                     # write into the package (the base)
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from fl_app.federation.config import conf_dir
from fl_app.pretrain.config import PretrainConfig


@hydra.main(config_path=str(conf_dir()), config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from fl_app.checkpoints.format import write_checkpoint_dir
    from fl_app.pretrain.recipe import run

    typed: PretrainConfig = OmegaConf.to_object(  # type: ignore[assignment]
        OmegaConf.merge(OmegaConf.structured(PretrainConfig), cfg)
    )
    out = run(typed, log=lambda m: print(m, flush=True))
    manifest = write_checkpoint_dir(typed.out, out["tensors"], out["manifest"])
    print(f"wrote {typed.out} (sha256 {manifest['sha256'][:12]})")


if __name__ == "__main__":
    main()
