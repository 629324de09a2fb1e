"""Presentation-attack evaluation (`faceonly evaluate --pad`): ISO/IEC 30107-3 figures of the shipped challenge
on recorded clips, with a simulated presenter that answers prompts from the clip's own annotated motions."""
