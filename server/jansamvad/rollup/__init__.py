"""The live roll-up by region unit: viewers, questions asked and approved, reactions and poll votes per unit."""
