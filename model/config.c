/* placeholder: filled by the loader work */
