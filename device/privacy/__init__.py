"""What may leave the terminal, and in what form: thumbnails, sealing, signing, renewable templates, audit."""
