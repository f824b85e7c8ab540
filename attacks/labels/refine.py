"""placeholder"""
def restore_ilrg_refine(model, gradients, batch_size, **options):
    raise NotImplementedError
