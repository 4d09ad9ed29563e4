"""Water and solvent: the reference models, the reference data and the MD checks.

- :mod:`~mctsff.water.models`: q-SPC/Fw, SPC/Fw and TIP3P as mctsff potentials (the
  published references a found potential is compared with), and their refits.
- :mod:`~mctsff.water.qm`: water dimers and their MP2 (PySCF) or GFN2-xTB (tblite) forces.
- :mod:`~mctsff.water.md`: solvent forces on a solute from explicit-water MD (OpenMM), the
  data of implicit-solvent fits.
- :mod:`~mctsff.water.mdcheck`: found potentials in MD (liquid water, alanine dipeptide in
  implicit solvent) judged by the distributions they give (``mctsff md-check``).

Nothing heavy is imported here: PySCF, tblite and OpenMM load when a function needs them.
"""
