#!/usr/bin/python3
"""libsolv through its Python binding (python3-solv), the baseline of a fresh-process resolve:
load Debian Packages files, solve one install job on an empty system (recommends ignored), print
the packages the transaction installs as "name version", one a line.

    /usr/bin/python3 libsolv-solve.py JOB Packages...            # parse the Packages text
    /usr/bin/python3 libsolv-solve.py --write-solv OUT Packages... # write a .solv cache, no solve
    /usr/bin/python3 libsolv-solve.py --solv FILE JOB             # load that cache instead

The .solv cache is what package managers built on libsolv (zypper, dnf) keep between runs, so a
resolve there starts from it rather than from the repository's text.
"""
import sys

import solv

pool = solv.Pool()
pool.setdisttype(solv.Pool.DISTTYPE_DEB)
pool.setarch("amd64")
repo = pool.add_repo("debian")


def load_packages(files):
    for f in files:
        fp = solv.xfopen(f)
        if not fp:
            sys.exit(f"cannot open {f}")
        repo.add_debpackages(fp)
        fp.close()
    pool.addfileprovides()


if sys.argv[1] == "--write-solv":
    out, files = sys.argv[2], sys.argv[3:]
    load_packages(files)
    fp = solv.xfopen(out, "w")
    if not fp or not repo.write(fp):
        sys.exit(f"cannot write {out}")
    fp.close()
    sys.exit(0)
if sys.argv[1] == "--solv":
    cache, job = sys.argv[2], sys.argv[3]
    fp = solv.xfopen(cache)
    if not fp or not repo.add_solv(fp):
        sys.exit(f"cannot read {cache}")
    fp.close()
else:
    job = sys.argv[1]
    load_packages(sys.argv[2:])
pool.createwhatprovides()
sel = pool.select(job, solv.Selection.SELECTION_NAME)
if sel.isempty():
    sys.exit(f"no package {job}")
solver = pool.Solver()
solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 1)
problems = solver.solve(sel.jobs(solv.Job.SOLVER_INSTALL))
if problems:
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    sys.exit(1)
for s in solver.transaction().newsolvables():
    print(s.name, s.evr)
