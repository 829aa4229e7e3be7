"""Analysis: learning curves, the sentence map (Figure 2), attention maps and the paired
bootstrap comparison of two systems."""
