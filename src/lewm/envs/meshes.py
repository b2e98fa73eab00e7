"""Coarser visual meshes for software rendering.

Headless machines without a GPU render MuJoCo through Mesa's llvmpipe, where the cost of a
frame is the number of triangles, not pixels: OGBench's UR5e and Robotiq gripper carry about
185,000 of them, most far below a pixel at the 64-224 px the models see. Vertex clustering
(snap vertices to a grid of `cell` metres, keep one vertex per occupied cell, drop faces
that collapse) removes those, in place, in the compiled model.

Only what is drawn changes. MuJoCo collides mesh geoms through their convex hulls
(`mesh_graph`), which are left alone; the faces edited here are read by the renderer (and
ray casts, which lewm does not use), so trajectories stay identical (tests/test_worlds.py).
"""

from __future__ import annotations

import numpy as np


def cluster_faces(verts: np.ndarray, faces: np.ndarray, cell: float) -> np.ndarray:
    """Indices of the faces kept after clustering `verts` (V, 3) into cubes of side `cell`,
    and those faces (F', 3) rewritten onto each cluster's first vertex: (kept, new_faces)."""
    keys = np.floor(verts / cell).astype(np.int64)
    _, first, cluster = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rep = first[cluster.reshape(-1)]  # vertex -> the representative of its cell
    mapped = rep[faces]
    a, b, c = mapped.T
    kept = np.flatnonzero((a != b) & (b != c) & (a != c))
    # Faces that became copies of one another (any winding) are drawn once.
    _, unique = np.unique(np.sort(mapped[kept], axis=1), axis=0, return_index=True)
    kept = kept[np.sort(unique)]
    return kept, mapped[kept]


def simplify_meshes(model, cell: float, min_faces: int = 200) -> tuple[int, int]:
    """Cluster every mesh of a compiled MuJoCo `model` with at least `min_faces` faces, in
    place; returns the total face counts (before, after). Call before making a renderer."""
    before = after = 0
    for i in range(model.nmesh):
        start, count = int(model.mesh_faceadr[i]), int(model.mesh_facenum[i])
        before += count
        if count < min_faces:
            after += count
            continue
        v0, nv = int(model.mesh_vertadr[i]), int(model.mesh_vertnum[i])
        faces = model.mesh_face[start:start + count]  # vertex indices local to the mesh
        kept, new_faces = cluster_faces(model.mesh_vert[v0:v0 + nv], faces, cell)
        n = len(kept)
        # Per-corner normal and texture indices follow their faces.
        normals = model.mesh_facenormal[start + kept].copy()
        texcoords = model.mesh_facetexcoord[start + kept].copy()
        model.mesh_face[start:start + n] = new_faces
        model.mesh_facenormal[start:start + n] = normals
        model.mesh_facetexcoord[start:start + n] = texcoords
        model.mesh_facenum[i] = n
        after += n
    return before, after
