"""Stage 5: what a basis keeps and what a reconstruction shows (angles, FSC, plots)."""
