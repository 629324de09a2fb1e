"""The gate away from the terminal: the signed decision's check, the relay it drives, and the reference
listener an integrator runs next to that relay (`faceonly gate listen`). Nothing here is terminal code
but the relay, which the terminal's own gpio gate shares."""
