#!/usr/bin/python3
"""libsolv through its Python binding (python3-solv), the baseline of a fresh-process resolve:
load Debian Packages files, solve one install job on an empty system (recommends ignored), print
the packages the transaction installs as "name version", one a line.

    /usr/bin/python3 libsolv-solve.py JOB Packages...
"""
import sys

import solv

job, files = sys.argv[1], sys.argv[2:]
pool = solv.Pool()
pool.setdisttype(solv.Pool.DISTTYPE_DEB)
pool.setarch("amd64")
repo = pool.add_repo("debian")
for f in files:
    fp = solv.xfopen(f)
    if not fp:
        sys.exit(f"cannot open {f}")
    repo.add_debpackages(fp)
    fp.close()
pool.addfileprovides()
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
