"""One-off: third/dot_wall.py's profile of MAML's Omniglot step (remat), with the stride-2
patches taken from parity planes (planes.py's `planes_patches`) patched in.

    python planes_profile.py
"""
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.argv = ["planes.py"]
namespace = {"__file__": str(here / "planes.py")}
exec((here / "planes.py").read_text().split("# check values first")[0], namespace)
import fometa.convnets as cn  # noqa: E402
cn.extract_patches = namespace["planes_patches"]
wall = here.parent / "third" / "dot_wall.py"
sys.argv = [str(wall), "omniglot-5w1s", "maml", "1"]
# dot_wall.py's first part (the profile); its second part counts the dots' work
exec(wall.read_text().split("# The dots' floating")[0], {"__file__": str(wall)})
