"""The experiment flow: fold -> median atlas -> atlas INR -> GINR training -> inference -> baselines -> metrics."""
