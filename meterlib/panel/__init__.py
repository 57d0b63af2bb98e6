"""The upload-and-predict panel of notebook 04: uploads in, answers as widgets out."""
