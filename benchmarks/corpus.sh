#!/usr/bin/env bash
# Gather free-to-use photographs reachable on a Debian machine into a corpus folder for
# monet-mini (benchmarks/mini.py): scikit-image's bundled colour photos and the photographic
# wallpapers of the Debian packages mate-backgrounds (nature/), lomiri-wallpapers-16.04,
# lomiri-wallpapers-20.04, plasma-workspace-wallpapers (its photographs only, listed in
# PLASMA below; the rest are illustrations) and palapeli-data (the 5 photographs of its puzzle
# collection, each with author and licence in its .desktop file) (installed with apt-get when
# missing). Images are
# copied, never committed; the KDE wallpapers (up to 5120 px) are saved as PNG shrunk to at
# most 2048 px. Writes:
#   OUT/train/*       photos for puzzles and training
#   OUT/heldout/*     a fixed subset kept out of training, for evaluation (HELDOUT below)
#   OUT/manifest.json one entry per image: file, split, source, licence, copyright holder
#   OUT/LICENSES.txt  the packages' Debian copyright files and scikit-image's data README
#
# usage: benchmarks/corpus.sh OUT_DIR        (PYTHON=/path/to/python with scikit-image and monet)
set -euo pipefail
OUT=${1:?usage: benchmarks/corpus.sh OUT_DIR}
PY=${PYTHON:-python3}
PKGS="mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers palapeli-data"
# The photographs among plasma-workspace-wallpapers (folder names under /usr/share/wallpapers).
PLASMA="FallenLeaf Path DarkestHour summer_1am EveningGlow Grey ColorfulCups OneStandsOut ColdRipple BytheWater"
# Not photographs (illustrations, patterns, paintings): left out.
EXCLUDE="analogpattern_by_Peter_Nerlich.jpg Painting-Colors_by__herobrine7gamer.jpg Fossa_by_Jasper_Roks.jpg Infinite-Sea_by_Aury88.jpg"
# Held out of training, scored by `monet bench restore`: one per source, varied content.
HELDOUT="chelsea.png Dune.jpg LadyBird.jpg Storm.jpg Bridge_by_Sander_Klootwijk.jpg sunset_by_Aitzol_Berasategi.jpg"

missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing$missing" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >&2
fi

mkdir -p "$OUT/train" "$OUT/heldout"
"$PY" - "$OUT" "$EXCLUDE" "$HELDOUT" "$PLASMA" $PKGS <<'PYEOF'
import json, re, shutil, subprocess, sys
from pathlib import Path

out, exclude, heldout, plasma = Path(sys.argv[1]), set(sys.argv[2].split()), set(sys.argv[3].split()), sys.argv[4].split()
pkgs = sys.argv[5:]
entries, licences = [], []

def place(src: Path, name: str) -> Path:
    split = "heldout" if name in heldout else "train"
    dst = out / split / name
    if not dst.exists():
        shutil.copyfile(src, dst)
    return dst

# scikit-image's colour photographs (monet_cli.bench.SKIMAGE_PHOTOS), written by monet itself
from monet_cli.bench import export_skimage_photos
import skimage
tmp = out / ".skimage"
tmp.mkdir(exist_ok=True)
export_skimage_photos(tmp)
readme = Path(skimage.data.__file__).parent / "README.txt"
for p in sorted(tmp.glob("*.png")):
    dst = place(p, p.name)
    entries.append({"file": str(dst.relative_to(out)), "split": dst.parent.name, "source": f"scikit-image {skimage.__version__} (skimage.data)",
                    "licence": "see scikit-image's data README (CC0 / public domain / permissive, per image)", "copyright": None})
shutil.rmtree(tmp)
licences.append(("scikit-image data (skimage/data/README.txt)", readme.read_text(encoding="utf-8", errors="replace")))

for pkg in pkgs:
    copyright = Path(f"/usr/share/doc/{pkg}/copyright").read_text(encoding="utf-8", errors="replace")
    licences.append((f"Debian package {pkg} (/usr/share/doc/{pkg}/copyright)", copyright))
    if pkg == "plasma-workspace-wallpapers":  # one folder per wallpaper: the largest image, its metadata's licence
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = None
        for name in plasma:
            folder = Path("/usr/share/wallpapers") / name
            images = sorted((folder / "contents" / "images").glob("*.*"), key=lambda q: q.stat().st_size)
            meta = json.loads((folder / "metadata.json").read_text(encoding="utf-8")).get("KPlugin", {})
            dst = out / ("heldout" if f"plasma_{name}.png" in heldout else "train") / f"plasma_{name}.png"
            if not dst.exists():
                im = Image.open(images[-1])
                im.draft("RGB", (2600, 2600))  # a JPEG decodes at the smallest scale still above 2048 px
                im = im.convert("RGB")
                im.thumbnail((2048, 2048))
                im.save(dst)
            entries.append({"file": str(dst.relative_to(out)), "split": dst.parent.name, "source": f"Debian package {pkg}",
                            "path": str(images[-1]), "licence": meta.get("License", "see copyright file"),
                            "copyright": ", ".join(a.get("Name", "") for a in meta.get("Authors", [])) or None})
        continue
    if pkg == "palapeli-data":  # the puzzle collection: one .desktop per photo names its author and licence
        for desk in sorted(Path("/usr/share/palapeli/collection").glob("*.desktop")):
            info = dict(l.split("=", 1) for l in desk.read_text(encoding="utf-8").splitlines() if "=" in l)
            src = desk.with_name(info.get("Image", desk.stem + ".jpg"))
            if not src.is_file():
                continue
            dst = place(src, f"palapeli_{src.name}")
            entries.append({"file": str(dst.relative_to(out)), "split": dst.parent.name, "source": f"Debian package {pkg}",
                            "path": str(src), "licence": info.get("X-KDE-PluginInfo-License", "see copyright file"),
                            "copyright": info.get("X-KDE-PluginInfo-Author") or None,
                            "origin": info.get("X-KDE-PluginInfo-Website") or None})
        continue
    # Files: stanzas → (pattern, licence, copyright)
    stanzas = []
    for block in re.split(r"\n\s*\n", copyright):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", block, re.M)
        lic = re.search(r"^License:\s*(.*)", block, re.M)
        cop = re.search(r"^Copyright:(.*(?:\n[ \t].*)*)", block, re.M)
        if files and lic:
            stanzas.append((files.group(1).split(), lic.group(1).strip(), " ".join(cop.group(1).split()) if cop else None))
    listed = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout.split()
    for f in sorted(listed):
        p = Path(f)
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png") or not p.is_file() or p.name in exclude:
            continue
        if pkg == "mate-backgrounds" and "/nature/" not in f:
            continue
        lic, cop = "see copyright file", None
        for patterns, l, c in stanzas:  # the last matching stanza wins (Debian copyright rules)
            if any(pat == "*" or Path(f).match(pat) or Path(pat).name == p.name for pat in patterns):
                lic, cop = l, c
        dst = place(p, p.name)
        entries.append({"file": str(dst.relative_to(out)), "split": dst.parent.name, "source": f"Debian package {pkg}",
                        "path": f, "licence": lic, "copyright": cop})

(out / "manifest.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
with (out / "LICENSES.txt").open("w", encoding="utf-8") as fh:
    fh.write("Licences of the photographs in this corpus (per image: manifest.json).\n\n")
    for title, text in licences:
        fh.write("=" * 78 + f"\n{title}\n" + "=" * 78 + f"\n{text}\n\n")
n_held = sum(e["split"] == "heldout" for e in entries)
print(f"corpus: {len(entries)} photos ({len(entries) - n_held} train, {n_held} held out) in {out}", file=sys.stderr)
PYEOF
