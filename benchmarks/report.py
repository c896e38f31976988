"""Turn a pytest-benchmark JSON file into the ratio table of benchmarks/README.md.

    pytest benchmarks/ --benchmark-enable --benchmark-json=bench.json
    python benchmarks/report.py bench.json

Ratios use each case's fastest round (the least disturbed by other load on
a shared machine) against the baselines of the same group, measured in the
same run: np.copyto of the same tile bytes (hot in cache, and into an
output image) and the plain numpy blend.
"""

import json
import sys

BASELINES = ("test_copyto_hot", "test_copyto_image", "test_numpy_reference")


def main(path):
    with open(path) as handle:
        data = json.load(handle)
    groups = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"], []).append(bench)
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
          f"{data['machine_info'].get('cpu', {}).get('count', '?')} cores; python "
          f"{data['machine_info'].get('python_version')}; {data['datetime'][:10]}")
    for group, benches in sorted(groups.items()):
        by_name = {b["name"].split("[")[0]: b for b in benches}
        tiles = benches[0].get("extra_info", {}).get("tiles")
        print(f"\n{group}" + (f" ({tiles} tiles)" if tiles else ""))
        header = f"  {'case':<28}{'per tile':>12}" + "".join(f"{'x ' + b[5:]:>22}" for b in BASELINES if b in by_name)
        print(header)
        for name, bench in sorted(by_name.items(), key=lambda item: item[1]["stats"]["min"]):
            best = bench["stats"]["min"]
            per = best / tiles * 1e6 if tiles else best * 1e3
            unit = "us" if tiles else "ms"
            ratios = "".join(f"{best / by_name[b]['stats']['min']:>22.2f}" for b in BASELINES if b in by_name)
            print(f"  {name[5:]:<28}{per:>9.1f} {unit}{ratios}")


if __name__ == "__main__":
    main(sys.argv[1])
